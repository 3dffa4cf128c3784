"""The stage table of `distillery run`: what each stage reads, runs, writes and takes from others.

A recipe lists stages by name: a kind from `STAGES` (`pretrain`), optionally with a label after a
dot (`pretrain.teacher`, `pretrain.student`, `sft.unfiltered`) so one kind can run several times.
The stage's settings are the recipe's top-level section of the same name, read into the kind's
config dataclass exactly as its own command reads its section (`distillery pretrain` reads
`pretrain:`), and its outputs go to `runs/<recipe name>/<stage name>/`.

A `StageType` names its parts by import path ("module:attr"), resolved only when needed, so a kind
whose module is absent from this checkout (or fails to import) is reported as "stage X needs module
Y" by `--dry-run` and before a run, instead of an ImportError from the middle of a run.

To add a stage kind: write `run(cfg, ctx) -> None` (see `distill/runner/adapters.py`; `ctx` is a
`StageContext`) and add one `StageType` row below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Output:
    """One thing a stage writes: `path` relative to its stage directory ("." = the directory)
    and a `kind` (model, tokenizer, data, samples, sft_data, rl_data, eval, report) that the
    wiring checks against what the reading key expects."""

    path: str
    kind: str


@dataclass(frozen=True)
class StageType:
    """One kind of stage.

    kind: the name a recipe lists (`pretrain`, or `pretrain.<label>`).
    config: "module:Class", the config dataclass; a recipe section loads into it.
    run: "module:function", called as `function(cfg, ctx)` (adapters.py), where `cfg` is the
        loaded config with the runner's paths and wiring filled in and `ctx` a StageContext.
    out_key: the config key the runner sets to the stage's output path (`<stage dir>/<out_path>`);
        a recipe must not set it. None: the adapter writes into `ctx.dir` itself.
    out_path: that path relative to the stage directory ("." = the directory itself).
    outputs: output name -> Output; "" is the stage's main output, what `${stage}` means in a
        recipe (`${stage.name}` names another). A callable gets the loaded config (outputs that
        depend on it, e.g. one file per synth set).
    inputs: config key pattern -> the output kind it reads ("a|b": either). `[]` matches any list index
        (`models[].path`). A `${...}` reference into such a key must name an output of that kind,
        and a literal path there must exist when the stage starts.
    wiring: config key -> "kind" or "kind.output": filled from the one earlier stage of that kind
        when the recipe leaves the key unset (two candidates: the recipe must choose with ${...});
        a key ending in `[]` is a list and gets a one-item list.
    scratch: config key -> path under the stage directory, set when the recipe leaves it unset
        (caches such as pretrain's token shards).
    """

    kind: str
    config: str
    run: str
    help: str
    out_key: str | None = "out_dir"
    out_path: str = "."
    outputs: dict[str, Output] | Callable[[Any], dict[str, Output]] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    wiring: dict[str, str] = field(default_factory=dict)
    scratch: dict[str, str] = field(default_factory=dict)

    def outputs_for(self, cfg: Any) -> dict[str, Output]:
        return self.outputs(cfg) if callable(self.outputs) else dict(self.outputs)


class StageUnavailable(ValueError):
    """A stage kind whose module cannot be imported in this checkout."""


def resolve(path: str, kind: str) -> Any:
    """The object at "module:attr", or StageUnavailable naming the stage and the module."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        missing = getattr(e, "name", None)
        why = ("module not available in this checkout" if missing and module_name.startswith(missing)
               else f"its import failed: {e}")
        raise StageUnavailable(f"stage {kind} needs module {module_name} ({why})") from e
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise StageUnavailable(f"stage {kind} needs {module_name}.{attr}, which does not exist") from e


def _synth_outputs(cfg) -> dict[str, Output]:
    return {"": Output(".", "data"), **{name: Output(f"{name}.jsonl", "data") for name in cfg.sets}}


STAGES: dict[str, StageType] = {s.kind: s for s in [
    StageType("synth", "distill.runner.synth:SynthConfig", "distill.runner.synth:run",
              "synthetic problems and solutions (data synth), one JSONL per named set",
              out_key=None, outputs=_synth_outputs),
    StageType("tokenizer", "pretrain.tokenizer:TokenizerConfig", "distill.runner.adapters:tokenizer",
              "byte-level BPE tokenizer on a corpus", out_path="tokenizer",
              outputs={"": Output("tokenizer", "tokenizer")}, inputs={"sources[]": "data"}),
    StageType("pretrain", "pretrain.config:PretrainConfig", "distill.runner.adapters:pretrain",
              "pretrain a base model (resumes from its last checkpoint)",
              outputs={"": Output("final", "model")},
              inputs={"data.sources[]": "data", "data.tokenizer": "tokenizer", "init_from": "model"},
              wiring={"data.tokenizer": "tokenizer"}, scratch={"data.shard_dir": "shards"}),
    # The four stages below: distill.generate (GenerateConfig), distill.filter (FilterConfig),
    # distill.sft (SFTRecipe: model is a path, data a list of sources), distill.grpo (GRPORecipe).
    StageType("generate", "distill.generate:GenerateConfig", "distill.runner.adapters:generate",
              "teacher samples, k per problem", outputs={"": Output("samples", "samples")},
              inputs={"teacher.path": "model", "problems": "data"}),
    StageType("filter", "distill.filter:FilterConfig", "distill.runner.adapters:filter",
              "verify, hygiene, shortest-correct selection, pass-rate band for RL", out_key="out",
              outputs={"": Output("sft.jsonl", "sft_data"), "rl": Output("rl_prompts.jsonl", "rl_data"),
                       "rejected": Output("rejected.jsonl", "samples")},
              inputs={"inputs[]": "samples"}, wiring={"inputs[]": "generate"}),
    StageType("sft", "distill.sft:SFTRecipe", "distill.runner.adapters:sft",
              "supervised fine-tuning of the student", out_key="out_dir",
              outputs={"": Output("final", "model")},
              inputs={"model": "model", "tokenizer": "tokenizer|model", "data[].path": "sft_data|samples"},
              wiring={"data[].path": "filter"}),
    StageType("grpo", "distill.grpo:GRPORecipe", "distill.runner.adapters:grpo",
              "GRPO with verifier and length rewards", out_key="output_dir",
              outputs={"": Output("final", "model")},
              inputs={"policy.path": "model", "data.path": "rl_data"},
              wiring={"policy.path": "sft", "data.path": "filter.rl"}),
    StageType("eval", "evals.config:EvalConfig", "distill.runner.adapters:evaluate",
              "k samples per problem: pass@1 ± se, pass@k, lengths", outputs={"": Output(".", "eval")},
              inputs={"models[].path": "model", "benchmarks[].path": "data"}),
    StageType("report", "distill.runner.report:ReportConfig", "distill.runner.report:run",
              "one report.md: stage wall times and every eval side by side", out_key=None,
              outputs={"": Output("report.md", "report")}, inputs={"evals[]": "eval"}),
]}


@dataclass
class StageContext:
    """What the runner hands a stage besides its config.

    name: the stage's name in the recipe (`pretrain.teacher`); dir: its directory;
    run_dir: `runs/<recipe name>/` (the report reads the other stages' records there);
    resume: an earlier attempt with the same config and inputs stopped before finishing, and its
        files are still in `dir` (a stage that checkpoints continues from them).
    """

    name: str
    dir: Path
    run_dir: Path
    resume: bool = False
