"""`distillery grpo` before training: recipe checks, prompt data, batch arithmetic, guards.
Every bad input here must fail before a model is loaded."""

import json

import pytest

from distill.grpo import DataSpec, GRPORecipe, LengthBudget, PolicySpec
from distill.grpo.data import prompt_rows
from distill.grpo.guards import batch_plan
from distill.grpo.run import prepare
from distill.rewards import RewardSpec
from recipes.config import ConfigError, load_config
from tests.distill.grpo_helpers import copy_task, tiny_policy


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return tiny_policy(tmp_path_factory.mktemp("policy"))


def recipe(policy, data, **kw):
    kw.setdefault("trainer", {"per_device_train_batch_size": 8, "num_generations": 4})
    return GRPORecipe(policy=PolicySpec(str(policy)), data=DataSpec(str(data)), **kw)


# ------------------------------------------------------------------ batch arithmetic

def test_batch_plan_explains_the_arithmetic():
    plan = batch_plan({"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
                       "num_generations": 4}, num_processes=2)
    # 2 x 4 x 2 = 16 completions per optimizer step; generation every 2 micro-steps: 16 = 4 prompts x 4
    assert "= 16 completions per optimizer step" in plan
    assert "= 16 completions = 4 prompts x num_generations 4" in plan
    assert "every 2 micro-step" in plan


def test_batch_plan_rejects_partial_groups_with_a_fix():
    with pytest.raises(ValueError) as e:
        batch_plan({"per_device_train_batch_size": 3, "num_generations": 4}, num_processes=1)
    msg = str(e.value)
    assert "generation batch (3) must split into whole groups of 4" in msg
    assert "per_device_train_batch_size in [4, 8, 12]" in msg
    assert "GRPO batch:" in msg  # the same explanation as the plan, not a bare error
    with pytest.raises(ValueError, match=">= 2"):
        batch_plan({"per_device_train_batch_size": 4, "num_generations": 1})
    with pytest.raises(ValueError, match="not both"):
        batch_plan({"generation_batch_size": 8, "steps_per_generation": 2})


def test_batch_plan_group_level_needs_whole_groups_per_process():
    fields = {"per_device_train_batch_size": 2, "num_generations": 4}
    batch_plan(fields, num_processes=2)  # 4 completions per generation globally: fine for TRL
    with pytest.raises(ValueError, match="whole groups per process"):
        batch_plan(fields, num_processes=2, group_level=True)


# ------------------------------------------------------------------ recipe checks

def test_trainer_fields_typos_removed_and_owned(tmp_path):
    base = {"policy": {"path": "p"}, "data": {"path": "d"}}
    path = tmp_path / "r.yaml"
    for trainer, match in [({"learnig_rate": 1e-6}, "did you mean 'learning_rate'"),
                           ({"max_prompt_length": 64}, "removed in TRL 1.x"),
                           ({"output_dir": "x"}, "set it as grpo.output_dir"),
                           ({"reward_weights": [1.0]}, "grpo.rewards")]:
        import yaml
        path.write_text(yaml.safe_dump({"grpo": {**base, "trainer": trainer}}))
        with pytest.raises(ConfigError, match=match):
            load_config(GRPORecipe, path, section="grpo")
    path.write_text(yaml.safe_dump({"grpo": {**base, "rewards": [{"name": "kimmi"}]}}))
    with pytest.raises(ConfigError, match="did you mean 'kimi'"):
        load_config(GRPORecipe, path, section="grpo")
    # every GRPOConfig field passes through, e.g. DAPO's clip-higher and Dr. GRPO's loss
    path.write_text(yaml.safe_dump({"grpo": {**base, "trainer": {
        "loss_type": "dr_grpo", "epsilon_high": 0.28, "scale_rewards": "none",
        "mask_truncated_completions": True, "num_iterations": 2, "use_vllm": False}}}))
    assert load_config(GRPORecipe, path, section="grpo").trainer["epsilon_high"] == 0.28


def test_prepare_builds_trl_config_and_rewards(policy, tmp_path):
    data = copy_task(tmp_path / "p.jsonl")
    cfg = recipe(policy, data, rewards=[RewardSpec("accuracy", 1.0), RewardSpec("kimi", 0.5)],
                 trainer={"per_device_train_batch_size": 8, "num_generations": 4, "epsilon_high": 0.28,
                          "max_completion_length": 16})
    tok, ds, funcs, args, plan = prepare(cfg)
    assert [f.__name__ for f in funcs] == ["accuracy", "kimi"]
    assert args.reward_weights == [1.0, 0.5] and args.epsilon_high == 0.28
    assert funcs[1].num_generations == 4
    assert set(ds.column_names) >= {"prompt", "reference", "kind", "problem_id", "pass_rate"}


def test_missing_columns_no_template_bad_model_fail_before_training(policy, tmp_path):
    rows = tmp_path / "p.jsonl"
    rows.write_text(json.dumps({"problem": "1", "reference": "1"}) + "\n")
    with pytest.raises(ValueError, match="reward lcpo_max needs column.*length_budget"):
        prepare(recipe(policy, rows, rewards=[RewardSpec("lcpo_max")]))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare(recipe(tmp_path / "nope", rows))
    bare = tiny_policy(tmp_path / "bare")
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="no chat template"):
        prepare(recipe(bare, rows))
    with pytest.raises(ValueError, match="whole groups of 4"):
        prepare(recipe(policy, rows, trainer={"per_device_train_batch_size": 6, "num_generations": 4}))


# ------------------------------------------------------------------ data

def test_prompt_rows_field_map_band_and_messages(tmp_path):
    path = tmp_path / "rl.jsonl"
    rows = [{"id": 1, "question": "2+2?", "gold": "4", "pass_rate": 0.5},
            {"id": 2, "question": "easy", "gold": "1", "pass_rate": 1.0},
            {"id": 3, "question": [{"role": "user", "content": "chat"}], "gold": {"inputs": ["1"], "outputs": ["1"]},
             "pass_rate": 0.2, "kind": "code"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = DataSpec(str(path), fields={"prompt": "question", "reference": "gold"}, pass_rate=[0.1, 0.9],
                    system_prompt="Be brief.", prompt_template="Q: {question}")
    out = prompt_rows(spec)
    assert [r["problem_id"] for r in out] == ["1", "3"]  # pass_rate 1.0 is outside the band
    assert out[0]["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q: 2+2?"}]
    assert out[1]["prompt"] == [{"role": "user", "content": "chat"}]  # messages kept as they are
    assert json.loads(out[1]["reference"]) == {"inputs": ["1"], "outputs": ["1"]} and out[1]["kind"] == "code"
    with pytest.raises(ValueError, match="no 'reference' column"):
        prompt_rows(DataSpec(str(path), fields={"prompt": "question"}))
    with pytest.raises(ValueError, match="maps reference to 'answer'"):
        prompt_rows(DataSpec(str(path), fields={"prompt": "question", "reference": "answer"}))


def test_length_budget_prompts(tmp_path):
    path = copy_task(tmp_path / "p.jsonl", digits="01", repeat=50)
    out = prompt_rows(DataSpec(str(path), length_budget=LengthBudget("max", 100, 4000, seed=1)))
    budgets = [r["length_budget"] for r in out]
    assert all(100 <= b <= 4000 for b in budgets) and len(set(budgets)) > 50
    assert all(r["prompt"][-1]["content"].endswith(f" Think for maximum {r['length_budget']} tokens.") for r in out)
    assert budgets == [r["length_budget"] for r in prompt_rows(DataSpec(str(path), length_budget=LengthBudget(
        "max", 100, 4000, seed=1)))]  # seeded
    exact = prompt_rows(DataSpec(str(path), limit=1, length_budget=LengthBudget("exact", 7, 7)))
    assert exact[0]["prompt"][-1]["content"] == "0 Think for 7 tokens."


def test_synthetic_prompt_source():
    out = prompt_rows(DataSpec("synthetic:arithmetic?n=5&split=train&seed=3"))
    assert len(out) == 5 and all(r["kind"] == "math" and r["reference"] for r in out)
    assert "\\boxed{}" in out[0]["prompt"][-1]["content"]
