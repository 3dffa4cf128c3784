"""Read a recipe into a checked plan: every stage's config loaded, paths and wiring resolved.

A recipe is one YAML file:

    run:
      name: quickstart                 # outputs under <root>/<name>/<stage>/
      root: runs
      stages: [synth, tokenizer, pretrain.teacher, eval]
    synth: {...}                       # one top-level section per listed stage
    pretrain.teacher:
      data:
        sources: ["${synth.teacher_traces}"]   # wiring: an earlier stage's output
    eval:
      models: [{name: teacher, path: "${pretrain.teacher}"}]

`${stage}` is that stage's main output, `${stage.output}` a named one (registry.py lists them).
Everything that can be checked without running is checked here, so a bad recipe fails before any
stage starts: stage names, section names, `--set` targets, every config key and type, the
wiring (the referenced stage exists, runs earlier and makes an output of the kind the key reads),
and literal input paths (`Stage.missing`: listed by `--dry-run`, an error before a run starts).
A stage whose module is absent is kept in the plan with its error, so `--dry-run` can list every
problem at once.
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.runner.registry import STAGES, Output, StageType, StageUnavailable, resolve
from distill.runner.state import config_hash
from recipes.config import (ConfigError, blame_override, config_from_mapping, config_to_dict,
                            read_mapping)

REF = re.compile(r"\$\{([^}]*)\}")
STAGE_NAME = re.compile(r"^[a-z]+(\.[A-Za-z0-9_-]+)?$")


@dataclass
class RunSection:
    """The recipe's `run:` section. name: the run directory under `root`; stages: in order."""

    name: str
    stages: list[str]
    root: str = "runs"

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(f"name {self.name!r}: use letters, digits, '.', '_' and '-'")
        if not self.stages:
            raise ValueError("stages: list at least one stage")


@dataclass
class Stage:
    """One stage of the plan. `cfg`, `digest` and `outputs` are None when it cannot be loaded
    (`error` says why: its module is absent, or an upstream stage's is)."""

    name: str
    type: StageType
    dir: Path
    cfg: Any = None
    error: str | None = None
    outputs: dict[str, tuple[Path, str]] | None = None  # name -> (path, kind)
    upstream: list[str] = field(default_factory=list)   # stages whose outputs it reads
    wired: list[str] = field(default_factory=list)      # "key <- ${ref}" lines, for --dry-run
    wired_values: set[str] = field(default_factory=set)  # paths the wiring put in
    missing: list[str] = field(default_factory=list)     # literal input paths that do not exist
    digest: str | None = None


@dataclass
class Plan:
    recipe: Path
    run: RunSection
    run_dir: Path
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise ValueError(f"unknown stage '{name}'{_suggest(name, [s.name for s in self.stages])}; "
                         f"the recipe's stages: {', '.join(s.name for s in self.stages)}")


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _stage_type(name: str, recipe: Path) -> StageType:
    kind = name.split(".", 1)[0]
    if not STAGE_NAME.match(name) or kind not in STAGES:
        raise ConfigError(f"{recipe}: run.stages: unknown stage '{name}'{_suggest(kind, list(STAGES))}"
                          f"; a stage is KIND or KIND.LABEL with KIND one of {', '.join(STAGES)}")
    return STAGES[kind]


def _split_overrides(overrides: list[str], names: list[str]) -> dict[str, list[str]]:
    """`--set stage.key=v` -> {stage: ["key=v"]}; the longest stage name that prefixes the key wins
    (`pretrain.teacher.train.max_steps` belongs to `pretrain.teacher`). `run.*` goes to "run"."""
    out: dict[str, list[str]] = {}
    for text in overrides:
        key = text.partition("=")[0].strip()
        owner = max((n for n in [*names, "run"] if key.startswith(n + ".")), key=len, default=None)
        if owner is None:
            first = key.split(".")[0]
            raise ConfigError(f"--set {text}: '{key}' names no stage of this recipe"
                              f"{_suggest(first, names)}; write --set STAGE.KEY=VALUE with STAGE one "
                              f"of {', '.join(names)} (or run)")
        out.setdefault(owner, []).append(text[len(owner) + 1:].lstrip())
    return out


def _leaves(obj: Any, keypath: str = ""):
    """(keypath with indices, keypath with [] for indices, leaf value, parent mapping)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            sub = f"{keypath}.{k}" if keypath else str(k)
            if isinstance(v, (dict, list)):
                yield from _leaves(v, sub)
            else:
                yield sub, re.sub(r"\[\d+\]", "[]", sub), v, obj
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            sub = f"{keypath}[{i}]"
            if isinstance(v, (dict, list)):
                yield from _leaves(v, sub)
            else:
                yield sub, re.sub(r"\[\d+\]", "[]", sub), v, obj


def _get(data: dict, key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(data.get(part), dict):
            data[part] = {}
        data = data[part]
    data[parts[-1]] = value


class _Wiring:
    """Resolves `${stage[.output]}` for one stage against the stages planned before it."""

    def __init__(self, recipe: Path, stage: Stage, earlier: dict[str, Stage], order: list[str]):
        self.recipe, self.stage, self.earlier, self.order = recipe, stage, earlier, order

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.recipe}: {self.stage.name}.{key}: {message}")

    def output(self, key: str, ref: str) -> tuple[str, Output | None, Stage]:
        """The stage and output `ref` names; a mismatch is an error naming key and ref."""
        owner = max((n for n in self.order if ref == n or ref.startswith(n + ".")), key=len,
                    default=None)
        if owner is None:
            raise self.fail(key, f"${{{ref}}} names no stage of this recipe"
                                 f"{_suggest(ref.split('.')[0], self.order)}")
        if owner not in self.earlier:
            raise self.fail(key, f"${{{ref}}}: stage {owner} runs after {self.stage.name} (or is "
                                 "the same stage); a stage reads only from earlier ones")
        src = self.earlier[owner]
        name = ref[len(owner) + 1:]
        if src.outputs is None:  # an unavailable stage: its outputs cannot be listed
            return owner, None, src
        if name not in src.outputs:
            names = ", ".join(f"${{{owner}.{n}}}" if n else f"${{{owner}}}" for n in src.outputs)
            raise self.fail(key, f"${{{ref}}}: stage {owner} has no output '{name}'; it makes {names}")
        path, kind = src.outputs[name]
        return owner, Output(str(path), kind), src

    def substitute(self, key: str, pattern: str, text: str) -> str:
        """`text` with each ${ref} replaced by its path; checks the kind the key expects."""
        def one(match: re.Match) -> str:
            ref = match.group(1).strip()
            owner, out, _ = self.output(key, ref)
            if owner not in self.stage.upstream:
                self.stage.upstream.append(owner)
            self.stage.wired.append(f"{key} <- ${{{ref}}}")
            if out is None:
                return f"<{ref}>"
            want = self.stage.type.inputs.get(pattern)
            if want is not None and out.kind not in want.split("|"):
                wanted = " or ".join(want.split("|"))
                raise self.fail(key, f"reads a {wanted}, but ${{{ref}}} is a {out.kind} ({out.path})")
            return out.path
        return REF.sub(one, text)

    def default(self, key: str, target: str) -> str | None:
        """The path for an unset wired key: the one earlier stage of `target`'s kind."""
        kind, _, name = target.partition(".")
        found = [n for n in self.earlier if n.split(".")[0] == kind]
        if not found:
            return None
        if len(found) > 1:
            raise self.fail(key, f"is unset and {len(found)} earlier stages could fill it "
                                 f"({', '.join(found)}): set it to one of "
                                 + ", ".join(f"${{{n}{'.' + name if name else ''}}}" for n in found))
        ref = found[0] + (f".{name}" if name else "")
        shown = key.replace("[]", "[0]")
        return self.substitute(shown, key, f"${{{ref}}}")


def _section(data: dict, name: str, recipe: Path) -> dict:
    section = data.get(name) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{recipe}: {name}: expected a mapping, got {type(section).__name__}")
    return copy.deepcopy(section)


def _missing_inputs(stage: Stage, raw: dict) -> list[str]:
    """Literal (not wired) paths in input keys that do not exist; an openai model is a name."""
    missing = []
    for key, pattern, value, parent in _leaves(raw):
        if pattern not in stage.type.inputs or not isinstance(value, str) or value in stage.wired_values:
            continue
        if isinstance(parent, dict) and parent.get("backend") == "openai":
            continue
        if not Path(value).exists():
            missing.append(f"{stage.name}.{key}: {value} does not exist")
    return missing


def _wire(stage: Stage, raw: dict, sets: list[str], wiring: _Wiring) -> list[str]:
    """Fill `raw` in place: ${...} references, default wiring, scratch paths and the output path;
    returns the `--set` texts with their references resolved."""
    t = stage.type
    for key, pattern, value, parent in list(_leaves(raw)):
        if isinstance(value, str) and REF.search(value):
            new = wiring.substitute(key, pattern, value)
            stage.wired_values.add(new)
            parent[int(key[key.rindex("[") + 1:-1]) if key.endswith("]") else key.split(".")[-1]] = new
    sets = [_substitute_override(wiring, text) for text in sets]
    set_keys = {text.partition("=")[0].strip() for text in sets}
    for key, target in t.wiring.items():
        plain, _, item_key = key.partition("[].")  # `data[].path`: a one-item list of mappings
        plain = plain.removesuffix("[]")
        if _get(raw, plain) is None and plain not in set_keys and not _set_under(plain, set_keys):
            value = wiring.default(key, target)
            if value is not None:
                _set(raw, plain, [{item_key: value}] if item_key else
                     [value] if key.endswith("[]") else value)
                stage.wired_values.add(value)
    for key, sub in t.scratch.items():
        if _get(raw, key) is None and key not in set_keys:
            _set(raw, key, str(stage.dir / sub))
    if t.out_key:
        _set(raw, t.out_key, str(stage.dir / t.out_path))
    return sets


def _load_stage(stage: Stage, data: dict, recipe: Path, sets: list[str],
                earlier: dict[str, Stage], order: list[str]) -> None:
    """Fill in stage.cfg, outputs and digest (or stage.error when it cannot be loaded)."""
    t, name = stage.type, stage.name
    raw = _section(data, name, recipe)
    if t.out_key and _get(raw, t.out_key) is not None:
        raise ConfigError(f"{recipe}: {name}.{t.out_key}: set by `distillery run` "
                          f"({stage.dir / t.out_path}); remove it from the recipe")
    sets = _wire(stage, raw, sets, _Wiring(recipe, stage, earlier, order))
    blocked = [u for u in stage.upstream if earlier[u].cfg is None]
    if blocked:
        stage.error = f"config checked, but it reads from {', '.join(blocked)}, which cannot run here"
    try:
        cls = resolve(t.config, t.kind)
    except StageUnavailable as e:
        stage.error = str(e)
        stage.outputs = None if callable(t.outputs) else {
            k: (stage.dir / o.path, o.kind) for k, o in t.outputs.items()}
        return
    cfg = config_from_mapping(cls, raw, recipe, sets, section=name, set_prefix=name + ".")
    if hasattr(cfg, "validate"):  # PretrainConfig's cross-field checks
        try:
            cfg.validate(f"{recipe}: {name}")
        except ValueError as e:
            raise ConfigError(blame_override(str(e), f"{recipe}: {name}", sets, name + ".")) from e
    stage.missing = _missing_inputs(stage, raw)
    stage.outputs = {k: (stage.dir / o.path, o.kind) for k, o in t.outputs_for(cfg).items()}
    if stage.error is None:
        stage.cfg = cfg
        stage.digest = config_hash(t.kind, config_to_dict(cfg),
                                   [earlier[u].digest for u in stage.upstream])


def _set_under(plain: str, set_keys: set[str]) -> bool:
    """A `--set` names an item or field under `plain` (`data[0].path` under `data`)."""
    return any(k.startswith(plain + "[") or k.startswith(plain + ".") for k in set_keys)


def _substitute_override(wiring: _Wiring, text: str) -> str:
    key, sep, value = text.partition("=")
    if not sep or not REF.search(value):
        return text
    pattern = re.sub(r"\[\d+\]", "[]", key.strip())
    return f"{key}={wiring.substitute(key.strip(), pattern, value)}"


def make_plan(recipe: str | Path, overrides: list[str] = ()) -> Plan:
    """Check the whole recipe (see the module docstring); ConfigError on the first problem."""
    recipe = Path(recipe)
    data = read_mapping(recipe)
    if "run" not in data:
        raise ConfigError(f"{recipe}: no `run:` section (name, stages) - is this a recipe for "
                          "`distillery run`? Single-stage files go to their own command")
    names = data["run"].get("stages") if isinstance(data["run"], dict) else None
    names = [str(n) for n in names] if isinstance(names, list) else []
    by_stage = _split_overrides(list(overrides), names)
    run = config_from_mapping(RunSection, data["run"], recipe, by_stage.pop("run", []), section="run",
                              set_prefix="run.")
    dupes = sorted({n for n in run.stages if run.stages.count(n) > 1})
    if dupes:
        raise ConfigError(f"{recipe}: run.stages: {dupes} listed twice; give each a label "
                          "(e.g. pretrain.teacher, pretrain.student)")
    types = {n: _stage_type(n, recipe) for n in run.stages}
    for key in data:
        if key != "run" and key not in types:
            raise ConfigError(f"{recipe}: section '{key}' is not a stage in run.stages"
                              f"{_suggest(str(key), run.stages)}")
    run_dir = Path(run.root) / run.name
    stages: dict[str, Stage] = {}
    for name in run.stages:
        stage = Stage(name, types[name], run_dir / name)
        _load_stage(stage, data, recipe, by_stage.get(name, []), stages, run.stages)
        stages[name] = stage
    return Plan(recipe, run, run_dir, list(stages.values()))
