"""`distillery run`: recipe checks that must fail before anything runs, and --dry-run of the
recipes in recipes/. Nothing here trains; the end-to-end run is test_runner_e2e.py."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from distill.cli import main
from distill.runner import execute, make_plan
from distill.runner.execute import problems, select
from distill.runner.state import STARTED, status, write_record
from recipes.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
ABSENT = {"generate", "filter", "sft", "grpo"}  # built on other branches


def _base(root: Path) -> dict:
    return {
        "run": {"name": "t", "root": str(root), "stages": ["synth", "tokenizer", "pretrain", "eval",
                                                           "report"]},
        "synth": {"sets": {"traces": {"task": "arithmetic", "n": 20, "style": "r1", "difficulty": 1}}},
        "tokenizer": {"sources": ["${synth.traces}"], "vocab_size": 300},
        "pretrain": {"data": {"sources": ["${synth.traces}"]}, "model": {"vocab_size": 300},
                     "train": {"max_steps": 2}},
        "eval": {"models": [{"name": "m", "path": "${pretrain}"}],
                 "benchmarks": [{"name": "synthetic:arithmetic?n=2", "k": 1}]},
        "report": {"evals": ["${eval}"]},
    }


def _write(tmp_path: Path, recipe: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def base(tmp_path):
    return _base(tmp_path / "runs")


def _plan_error(tmp_path, recipe, overrides=(), match=""):
    with pytest.raises(ConfigError, match=match):
        make_plan(_write(tmp_path, recipe), list(overrides))
    assert not (tmp_path / "runs").exists()  # failed before anything ran or was written


def test_valid_recipe_plans_with_its_wiring(tmp_path, base):
    plan = make_plan(_write(tmp_path, base))
    run_dir = tmp_path / "runs" / "t"
    assert [s.name for s in plan.stages] == base["run"]["stages"]
    pre = plan.stage("pretrain")
    # out_dir belongs to the runner; the tokenizer is wired by default; shards go under the stage
    assert pre.cfg.out_dir == str(run_dir / "pretrain")
    assert pre.cfg.data.tokenizer == str(run_dir / "tokenizer" / "tokenizer")
    assert pre.cfg.data.shard_dir == str(run_dir / "pretrain" / "shards")
    assert pre.cfg.data.sources == [str(run_dir / "synth" / "traces.jsonl")]
    assert plan.stage("eval").cfg.models[0].path == str(run_dir / "pretrain" / "final")
    assert set(pre.upstream) == {"synth", "tokenizer"}
    assert problems(plan, select(plan, None, None)) == []
    assert not (tmp_path / "runs").exists()


def test_hash_follows_config_and_upstream(tmp_path, base):
    a = make_plan(_write(tmp_path, base))
    b = make_plan(_write(tmp_path, base), ["tokenizer.vocab_size=301"])
    assert a.stage("synth").digest == b.stage("synth").digest
    for name in ("tokenizer", "pretrain", "eval", "report"):  # tokenizer changed, so all below it
        assert a.stage(name).digest != b.stage(name).digest


@pytest.mark.parametrize("mutate, match", [
    (lambda r: r["run"]["stages"].append("pretrian"), r"unknown stage 'pretrian'.*did you mean 'pretrain'"),
    (lambda r: r["run"]["stages"].append("synth"), r"'synth'\] listed twice"),
    (lambda r: r.update({"pretrain.teachr": {}}), r"section 'pretrain.teachr' is not a stage"),
    (lambda r: r["tokenizer"].update(vocab_sise=300), r"tokenizer: unknown key 'vocab_sise'.*vocab_size"),
    (lambda r: r["pretrain"]["train"].update(max_steps="many"),
     r"recipe.yaml: pretrain.train.max_steps: expected int"),
    (lambda r: r["pretrain"].update(out_dir="elsewhere"), r"pretrain.out_dir: set by `distillery run`"),
])
def test_bad_recipes_fail_before_anything_runs(tmp_path, base, mutate, match):
    mutate(base)
    _plan_error(tmp_path, base, match=match)


@pytest.mark.parametrize("mutate, match", [
    # a reference to a stage that runs later
    (lambda r: r["tokenizer"].update(sources=["${pretrain}"]),
     r"tokenizer.sources\[0\]: \$\{pretrain\}: stage pretrain runs after tokenizer"),
    # an output the stage does not make
    (lambda r: r["tokenizer"].update(sources=["${synth.trace}"]),
     r"stage synth has no output 'trace'; it makes \$\{synth\}, \$\{synth.traces\}"),
    # a stage the recipe does not list
    (lambda r: r["eval"]["models"][0].update(path="${sft}"), r"\$\{sft\} names no stage"),
    # the wrong kind of output for the key: a tokenizer where a model is read
    (lambda r: r["eval"]["models"][0].update(path="${tokenizer}"),
     r"eval.models\[0\].path: reads a model, but \$\{tokenizer\} is a tokenizer"),
    (lambda r: r["pretrain"]["data"].update(tokenizer="${synth.traces}"),
     r"pretrain.data.tokenizer: reads a tokenizer, but \$\{synth.traces\} is a data"),
])
def test_mismatched_wiring_fails_before_anything_runs(tmp_path, base, mutate, match):
    mutate(base)
    _plan_error(tmp_path, base, match=match)


def test_ambiguous_default_wiring_asks_for_a_choice(tmp_path, base):
    base["run"]["stages"][1:2] = ["tokenizer.a", "tokenizer.b"]
    base["tokenizer.a"] = base["tokenizer.b"] = base.pop("tokenizer")
    _plan_error(tmp_path, base, match=r"pretrain.data.tokenizer: is unset and 2 earlier stages could "
                                      r"fill it \(tokenizer.a, tokenizer.b\)")
    base["pretrain"]["data"]["tokenizer"] = "${tokenizer.b}"
    plan = make_plan(_write(tmp_path, base))
    assert plan.stage("pretrain").cfg.data.tokenizer.endswith("tokenizer.b/tokenizer")


@pytest.mark.parametrize("override, match", [
    ("pretrian.train.max_steps=5", r"^--set pretrian.train.max_steps=5: 'pretrian.train.max_steps' "
                                   r"names no stage of this recipe \(did you mean 'pretrain'\?\)"),
    ("pretrain.train.max_stepz=5", r"^--set pretrain.train.max_stepz=5: unknown key 'train.max_stepz'"),
    ("pretrain.train.max_steps=abc", r"^--set pretrain.train.max_steps=abc: train.max_steps: expected int"),
    # a cross-field check (PretrainConfig.validate) failing because of the --set names the --set
    ("pretrain.train.seq_len=4096", r"^--set pretrain.train.seq_len=4096: .*train.seq_len=4096 exceeds"),
    # a __post_init__ check of a nested dataclass
    ("eval.sampling.temperature=-1", r"^--set eval.sampling.temperature=-1: sampling: temperature must"),
])
def test_set_errors_name_the_set(tmp_path, base, override, match):
    _plan_error(tmp_path, base, [override], match=match)


def test_set_reaches_a_labelled_stage(tmp_path, base):
    base["run"]["stages"][2] = "pretrain.teacher"
    base["pretrain.teacher"] = base.pop("pretrain")
    base["eval"]["models"][0]["path"] = "${pretrain.teacher}"
    plan = make_plan(_write(tmp_path, base), ["pretrain.teacher.train.max_steps=7"])
    assert plan.stage("pretrain.teacher").cfg.train.max_steps == 7


def test_missing_literal_input_is_reported_and_blocks_the_run(tmp_path, base):
    base["eval"]["models"].append({"name": "gone", "path": str(tmp_path / "no-such-model")})
    plan = make_plan(_write(tmp_path, base))
    assert plan.stage("eval").missing == [f"eval.models[1].path: {tmp_path / 'no-such-model'} does not exist"]
    with pytest.raises(ValueError, match="(?s)cannot run .*no-such-model does not exist"):
        execute(plan)
    assert not (tmp_path / "runs").exists()


def test_absent_stage_module_is_named_and_blocks_the_run(tmp_path, base):
    base["run"]["stages"].insert(3, "generate")
    base["generate"] = {"teacher": {"name": "t", "path": "${pretrain}"}}
    plan = make_plan(_write(tmp_path, base))
    gen = plan.stage("generate")
    if gen.error is None:
        pytest.skip("distill.generate is present in this checkout")
    assert gen.error == ("stage generate needs module distill.generate "
                         "(module not available in this checkout)")
    assert plan.stage("synth").error is None
    with pytest.raises(ValueError, match="stage generate needs module distill.generate"):
        execute(plan)
    assert not (tmp_path / "runs").exists()  # synth, which could run, did not start either


def test_only_needs_finished_inputs(tmp_path, base):
    plan = make_plan(_write(tmp_path, base))
    with pytest.raises(ValueError, match=r"stage eval reads pretrain's outputs, which are not complete"):
        select(plan, ["eval"], None)
    assert select(plan, ["synth"], None) == ["synth"]
    assert select(plan, None, "synth") == [s.name for s in plan.stages]
    with pytest.raises(ValueError, match=r"stage pretrain reads synth's outputs"):
        select(plan, None, "pretrain")
    with pytest.raises(ValueError, match=r"unknown stage 'evl' \(did you mean 'eval'\?\)"):
        select(plan, ["evl"], None)


def _recipes() -> list[Path]:
    return sorted(p for p in (REPO / "recipes").glob("*.yaml") if "run" in yaml.safe_load(p.read_text()))


def test_every_run_recipe_is_found():
    names = {p.name for p in _recipes()}
    assert {"quickstart.yaml", "pretrain-eval-tiny.yaml", "r1-distill-qwen-1.5b.yaml",
            "grpo-math-1.5b.yaml", "pretrain-moe-h200.yaml"} <= names


@pytest.mark.parametrize("recipe", _recipes(), ids=lambda p: p.name)
def test_dry_run_every_recipe(recipe, tmp_path, monkeypatch):
    """Every stage this checkout can load validates; the rest are named as absent modules (or wait
    on one). Real-scale recipes name local data and model paths: created empty here, since the
    check is that nothing else is missing."""
    monkeypatch.chdir(tmp_path)
    plan = make_plan(recipe, ["run.root=" + str(tmp_path / "runs")])
    for path in [m.split(": ", 1)[1].removesuffix(" does not exist") for s in plan.stages
                 for m in s.missing]:
        Path(path).mkdir(parents=True, exist_ok=True)
    plan = make_plan(recipe, ["run.root=" + str(tmp_path / "runs")])
    absent = set()
    for s in plan.stages:
        assert s.missing == []
        if s.error and "needs module" in s.error:
            assert s.type.kind in ABSENT, s.error
            absent.add(s.name)
        elif s.error:
            assert "which cannot run here" in s.error and set(s.upstream) & absent, s.error
            absent.add(s.name)  # blocked in turn
        else:
            assert s.cfg is not None and s.digest
    assert not (tmp_path / "runs").exists()


def test_cli_dry_run_prints_the_plan_and_runs_nothing(tmp_path, base, capsys):
    path = _write(tmp_path, base)
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[3/5] pretrain (pretrain) - would run" in out
    assert "data.tokenizer <- ${tokenizer}" in out
    assert "dry run: every stage checked; nothing was run" in out
    assert not (tmp_path / "runs").exists()


def test_cli_dry_run_of_quickstart_names_absent_modules(capsys):
    code = main(["run", str(REPO / "recipes" / "quickstart.yaml"), "--dry-run"])
    out, err = capsys.readouterr()
    if code == 0:
        pytest.skip("every stage module is present in this checkout")
    assert code == 2
    assert "needs module distill." in err and "(module not available in this checkout)" in err
    assert "[4/12] pretrain.student (pretrain) - " in out


def test_base_recipe_is_not_modified(tmp_path, base):
    before = copy.deepcopy(base)
    make_plan(_write(tmp_path, base), ["pretrain.train.max_steps=3"])
    assert base == before


def _small(root: Path) -> dict:
    return {"run": {"name": "s", "root": str(root), "stages": ["synth", "tokenizer"]},
            "synth": {"sets": {"a": {"n": 30, "style": "short", "difficulty": 1}}},
            "tokenizer": {"sources": ["${synth.a}"], "vocab_size": 280}}


def _statuses(path: Path, overrides=(), **kw) -> dict:
    return {o.stage: o.status for o in execute(make_plan(path, list(overrides)), **kw)}


def test_finished_stages_are_skipped_and_changed_ones_rerun(tmp_path, capsys):
    path = _write(tmp_path, _small(tmp_path / "runs"))
    run_dir = tmp_path / "runs" / "s"
    assert _statuses(path) == {"synth": "ran", "tokenizer": "ran"}
    rows = (run_dir / "synth" / "a.jsonl").read_text().splitlines()
    assert len(rows) == 30
    assert (run_dir / "tokenizer" / "stage_config.yaml").is_file()
    assert _statuses(path) == {"synth": "skipped (complete)", "tokenizer": "skipped (complete)"}
    # a changed synth set reruns synth and the tokenizer that reads it; the old outputs are kept
    assert _statuses(path, ["synth.sets.a.n=40"]) == {"synth": "ran", "tokenizer": "ran"}
    assert len((run_dir / "synth" / "a.jsonl").read_text().splitlines()) == 40
    assert len((run_dir / "synth.prev" / "a.jsonl").read_text().splitlines()) == 30
    # --only reruns a finished stage; its inputs are finished
    assert _statuses(path, ["synth.sets.a.n=40"], only=["tokenizer"]) == {
        "synth": "not selected", "tokenizer": "ran"}
    out = capsys.readouterr().out
    assert re.search(r"^\[1/1\] tokenizer: .*, ETA \d+s$", out, re.M)  # timed by the earlier runs
    assert re.search(r"^  tokenizer +ran +\S+ +.*tokenizer/tokenizer$", out, re.M)


def test_a_stopped_stage_is_resumed_not_restarted(tmp_path):
    """_STARTED without _COMPLETE and the same config: the stage runs with ctx.resume in the same
    directory (its files are kept); another config: moved aside and started fresh."""
    path = _write(tmp_path, _small(tmp_path / "runs"))
    plan = make_plan(path)
    synth = plan.stage("synth")
    synth.dir.mkdir(parents=True)
    write_record(synth.dir / STARTED, {"stage": "synth", "config_hash": synth.digest})
    (synth.dir / "partial-work").write_text("kept")
    assert _statuses(path)["synth"] == "resumed"
    assert (synth.dir / "partial-work").read_text() == "kept"
    assert status(synth.dir, synth.digest) == "complete"
    assert status(synth.dir, "0" * 16) == "stale"


def test_a_failing_stage_is_not_marked_complete(tmp_path, capsys):
    recipe = _small(tmp_path / "runs")
    recipe["synth"]["sets"]["a"]["style"] = "none"  # problems only: no `text` to train on
    plan = make_plan(_write(tmp_path, recipe))
    with pytest.raises(ValueError):
        execute(plan)
    assert re.search(r"^  tokenizer +failed", capsys.readouterr().out, re.M)
    tok = plan.stage("tokenizer")
    assert status(tok.dir, tok.digest) == "partial"
