"""recipes/quickstart.yaml shrunk with `--set` to tiny sizes: every stage, end to end.

The shrunken run proves the wiring between the real stages (synth -> tokenizer -> two pretrains ->
generate -> filter (+ the unfiltered ablation) -> SFT x2 -> GRPO -> eval -> report), not quality:
a 4-step teacher solves nothing, so the SFT sets and GRPO prompts are pointed at the synthetic
traces and a synthetic prompt set instead of the (empty) filtered ones. The fast test checks the
same overrides plan cleanly; the slow one runs them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.runner import execute, make_plan

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "recipes" / "quickstart.yaml"
SFT_TRL = "{max_steps: 2, per_device_train_batch_size: 4, save_steps: 2, max_length: 2048}"
TINY = [
    "synth.sets.teacher_traces.n=120", "synth.sets.student_answers.n=120", "synth.sets.problems.n=8",
    "synth.sets.teacher_facts.n=40", "synth.sets.student_facts.n=40",
    "tokenizer.vocab_size=300",
    *[f"pretrain.{m}.{k}" for m in ("teacher", "student") for k in (
        "model.vocab_size=300", "train.max_steps=3", "train.eval_every=3", "train.save_every=3",
        "train.batch_size=2")],
    "generate.n=2", "generate.sampling.max_new_tokens=16",
    'sft.data=[{path: "${synth.teacher_traces}", max_samples: 16}]',
    'sft.unfiltered.data=[{path: "${synth.teacher_traces}", max_samples: 16}]',
    f"sft.trl={SFT_TRL}", f"sft.unfiltered.trl={SFT_TRL}",
    "grpo.data.path=synthetic:chain?n=4&split=train&seed=3&difficulty=1",
    "grpo.trainer={max_steps: 1, per_device_train_batch_size: 4, num_generations: 2, "
    "max_completion_length: 8, save_steps: 1}",
    'eval.benchmarks=[{name: "synthetic:chain?n=3&split=test&difficulty=1", k: 2}]',
    "eval.sampling.max_new_tokens=16",
]
MODELS = ["student-base", "student-sft", "student-sft-unfiltered", "student-grpo", "teacher"]


def _sets(root: Path) -> list[str]:
    return [f"run.root={root}", *TINY]


def test_shrunken_quickstart_plans(tmp_path):
    plan = make_plan(QUICKSTART, _sets(tmp_path))
    assert [s.name for s in plan.stages][-3:] == ["grpo", "eval", "report"]
    for s in plan.stages:
        assert s.error is None and s.missing == [] and s.cfg is not None, s.name
    assert plan.stage("sft").cfg.data[0].path.endswith("synth/teacher_traces.jsonl")
    assert plan.stage("grpo").cfg.policy.path == str(plan.run_dir / "sft" / "final")
    assert not tmp_path.joinpath("quickstart").exists()


@pytest.mark.slow
def test_shrunken_quickstart_end_to_end(tmp_path):
    outcomes = execute(make_plan(QUICKSTART, _sets(tmp_path)))
    assert {o.stage: o.status for o in outcomes} == {o.stage: "ran" for o in outcomes}
    run = tmp_path / "quickstart"
    for stage in ("sft", "sft.unfiltered", "grpo"):
        assert (run / stage / "final" / "config.json").is_file(), stage
    results = json.loads(next((run / "eval").rglob("results.json")).read_text())["results"]
    assert {r["model"] for r in results} == set(MODELS)
    report = (run / "report" / "report.md").read_text()
    for name in [*MODELS, "pretrain.teacher", "grpo"]:
        assert name in report
    # a second run finds every stage complete and runs nothing
    again = execute(make_plan(QUICKSTART, _sets(tmp_path)))
    assert all(o.status.startswith("skipped") for o in again)


def test_sft_data_is_wired_from_the_one_filter_stage(tmp_path):
    """sft's `data` (a list of sources) left unset gets one source: the filter's SFT set; with two
    filter stages the recipe must choose."""
    import yaml

    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe["run"]["stages"] = ["synth", "tokenizer", "pretrain.teacher", "pretrain.student",
                               "generate", "filter", "sft"]
    for name in ("filter.unfiltered", "sft.unfiltered", "grpo", "eval", "report"):
        del recipe[name]
    del recipe["sft"]["data"]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    plan = make_plan(path, [f"run.root={tmp_path}"])
    sources = plan.stage("sft").cfg.data
    assert [s.path for s in sources] == [str(tmp_path / "quickstart" / "filter" / "sft.jsonl")]
    assert "data[0].path <- ${filter}" in plan.stage("sft").wired
    recipe["run"]["stages"].insert(6, "filter.unfiltered")
    recipe["filter.unfiltered"] = {"inputs": ["${generate}"]}
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(ValueError, match=r"sft.data\[\]?.*2 earlier stages"):
        make_plan(path, [f"run.root={tmp_path}"])
