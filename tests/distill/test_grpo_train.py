"""Short GRPO runs on a toy task with a tiny in-process policy (digit tokenizer, 2-layer Qwen2):
accuracy goes up, dynamic sampling trains on informative groups only, resume continues, the CLI
runs a recipe. The toy: the prompt is a digit, the gold is the same digit, one completion token."""

import json

import pytest
import torch
import yaml

from distill.grpo import DataSpec, DynamicSampling, GRPORecipe, PolicySpec
from distill.grpo.dynamic import DynamicSamplingTrainer, concat_batches, informative_mask
from distill.grpo.metrics import read_rows
from distill.grpo.run import run_grpo
from distill.rewards import RewardSpec
from tests.distill.grpo_helpers import copy_task, tiny_policy

TOY = {"per_device_train_batch_size": 32, "num_generations": 8, "max_completion_length": 1,
       "learning_rate": 0.02, "temperature": 1.0, "gradient_checkpointing": False, "seed": 0,
       "save_steps": 1000}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    return tiny_policy(d / "policy"), copy_task(d / "prompts.jsonl")


def toy_recipe(toy, out, steps, **kw):
    policy, data = toy
    trainer = {**TOY, "max_steps": steps, **kw.pop("trainer", {})}
    return GRPORecipe(policy=PolicySpec(str(policy)), data=DataSpec(str(data)), output_dir=str(out),
                      rewards=[RewardSpec("accuracy")], trainer=trainer, **kw)


def accuracy_curve(run_dir):
    return [r["rewards/accuracy/mean"] for r in read_rows(run_dir / "metrics.jsonl")
            if "rewards/accuracy/mean" in r]


def test_grpo_raises_mean_accuracy(toy, tmp_path):
    final = run_grpo(toy_recipe(toy, tmp_path / "run", steps=40))
    curve = accuracy_curve(tmp_path / "run")
    assert len(curve) == 40
    first, last = sum(curve[:10]) / 10, sum(curve[-10:]) / 10
    assert first < 0.2 and last > first + 0.3, curve  # chance is 1/20 per sample
    assert (final / "config.json").is_file() and (tmp_path / "run" / "plots" / "grpo.png").is_file()
    row = read_rows(tmp_path / "run" / "metrics.jsonl")[-1]
    assert {"completions/mean_length", "completions/max_length", "completions/clipped_ratio",
            "frac_reward_zero_std", "rewards/accuracy/std", "tokens_per_s"} <= set(row)


def test_dynamic_sampling_keeps_only_informative_groups_and_fills_the_batch(toy, tmp_path):
    seen = []
    original = DynamicSamplingTrainer._generate_and_score_completions

    def spy(self, inputs):
        out = original(self, inputs)
        seen.append((len(inputs), out["advantages"].clone(), self._metrics["train"]["dynamic_sampling/topped_up"][-1]))
        return out

    DynamicSamplingTrainer._generate_and_score_completions = spy
    try:
        run_grpo(toy_recipe(toy, tmp_path / "run", steps=4, dynamic_sampling=DynamicSampling(True, max_rounds=6)))
    finally:
        DynamicSamplingTrainer._generate_and_score_completions = original
    rows = read_rows(tmp_path / "run" / "metrics.jsonl")
    shares = [r["dynamic_sampling/dropped_share"] for r in rows]
    assert len(shares) == 4 and max(shares) > 0  # a fresh model gets whole groups wrong
    for need, adv, topped_up in seen:
        assert adv.numel() == need  # the batch is full
        if topped_up == 0:  # accuracy is 0/1, so in a mixed group no advantage is exactly 0
            assert (adv.abs() > 1e-6).all()


def test_informative_mask_and_concat():
    adv = torch.tensor([0.0, 0.0, 0.5, -0.5, 1e-9, -1e-9])
    assert informative_mask(adv, 2).tolist() == [False, False, True, True, False, False]
    a = {"prompt_ids": torch.tensor([[5, 6]]), "prompt_mask": torch.tensor([[1, 1]]),
         "completion_ids": torch.tensor([[7]]), "completion_mask": torch.tensor([[1]]),
         "advantages": torch.tensor([1.0]), "num_items_in_batch": torch.tensor(1)}
    b = {"prompt_ids": torch.tensor([[4]]), "prompt_mask": torch.tensor([[1]]),
         "completion_ids": torch.tensor([[8, 9, 3]]), "completion_mask": torch.tensor([[1, 1, 1]]),
         "advantages": torch.tensor([-1.0]), "num_items_in_batch": torch.tensor(3)}
    out = concat_batches([a, b], pad_token_id=0)
    assert out["prompt_ids"].tolist() == [[5, 6], [0, 4]] and out["prompt_mask"].tolist() == [[1, 1], [0, 1]]
    assert out["completion_ids"].tolist() == [[7, 0, 0], [8, 9, 3]]
    assert out["completion_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    with pytest.raises(ValueError, match="pixel_values"):
        concat_batches([{**a, "pixel_values": torch.zeros(1)}], 0)


def test_resume_continues_from_the_last_checkpoint(toy, tmp_path):
    out = tmp_path / "run"
    run_grpo(toy_recipe(toy, out, steps=4, trainer={"save_steps": 2}))
    assert (out / "checkpoint-4").is_dir()
    # a crash after step 4 would leave these rows; resume drops rows past the checkpoint
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 5, "stale": True}) + "\n")
    run_grpo(toy_recipe(toy, out, steps=6, trainer={"save_steps": 2}, resume=True))
    steps = [r["step"] for r in read_rows(out / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert not any(r.get("stale") for r in read_rows(out / "metrics.jsonl"))
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6


def test_cli_runs_a_recipe(toy, tmp_path, capsys):
    from distill.cli import main

    policy, data = toy
    recipe = tmp_path / "grpo.yaml"
    recipe.write_text(yaml.safe_dump({"grpo": {
        "policy": {"path": str(policy)}, "data": {"path": str(data)}, "output_dir": str(tmp_path / "run"),
        "rewards": [{"name": "accuracy"}, {"name": "overlong", "weight": 0.1}],
        "trainer": {**TOY, "max_steps": 2}, "plots": False}}))
    assert main(["grpo", "--config", str(recipe), "--set", "trainer.learning_rate=0.001"]) == 0
    out = capsys.readouterr().out
    assert "GRPO batch: 1 process(es)" in out and "wrote" in out
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["trainer"]["learning_rate"] == 0.001
    assert main(["grpo", "rewards"]) == 0
    assert "lcpo_max" in capsys.readouterr().out
    assert main(["grpo", "--config", str(recipe), "--set", "trainer.num_generation=3"]) == 2


@pytest.mark.slow
def test_two_process_gloo_run(toy, tmp_path):
    """torchrun with 2 CPU processes (gloo): Kimi (group-level) and dynamic sampling across ranks."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    policy, data = toy
    recipe = tmp_path / "grpo.yaml"
    recipe.write_text(yaml.safe_dump({"grpo": {
        "policy": {"path": str(policy)}, "data": {"path": str(data)}, "output_dir": str(tmp_path / "run"),
        "rewards": [{"name": "accuracy"}, {"name": "kimi", "weight": 0.1}],
        "dynamic_sampling": {"enabled": True},
        "trainer": {**TOY, "per_device_train_batch_size": 16, "max_completion_length": 2, "max_steps": 3}}}))
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "-m", "distill.cli", "grpo", "--config", str(recipe)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GRPO batch: 2 process(es)" in proc.stdout and proc.stdout.count("wrote") == 1
    rows = read_rows(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]  # written once, by rank 0
    assert all("rewards/kimi/mean" in r and "dynamic_sampling/dropped_share" in r for r in rows if "loss" in r)
