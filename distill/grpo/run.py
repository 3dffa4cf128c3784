"""`run_grpo(cfg) -> Path`: TRL's GRPOTrainer with our rewards, prompt set, guards and metrics.

Order: everything that can be wrong in the recipe is checked before a model is loaded (reward
names and args, dataset columns, batch arithmetic, chat template); the batch plan is printed in
one message; then the policy is loaded, trained, and saved to `<output_dir>/final` (an adapter
directory with LoRA). TRL checkpoints land in `<output_dir>/checkpoint-N`; `resume: true` picks
the last one. The resolved recipe is saved as `<output_dir>/config.yaml`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from distill.grpo.config import GRPORecipe
from distill.grpo.data import load_prompts
from distill.grpo.guards import batch_plan, check_chat_template
from distill.rewards import Judge, RewardContext, build_rewards, check_columns
from recipes.config import save_config

GROUP_LEVEL_REWARDS = {"kimi"}


def _num_processes() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def trainer_fields(cfg: GRPORecipe) -> dict:
    """GRPOConfig kwargs: CPU-friendly defaults under the recipe's `trainer` values."""
    import torch

    cuda = torch.cuda.is_available()
    # use_cpu on a CPU-only machine: accelerate then runs several processes as MULTI_CPU (gloo)
    # instead of silently training one independent copy per process
    defaults = {"logging_steps": 1, "report_to": "none", "bf16": cuda, "use_cpu": not cuda,
                "save_strategy": "steps", "save_steps": 50}
    return {**defaults, **cfg.trainer}


def policy_impl(cfg: GRPORecipe) -> str:
    from evals.generation import check_model_path

    path = check_model_path(cfg.policy.path, "grpo.policy")
    if cfg.policy.impl != "auto":
        return cfg.policy.impl
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    return "ours" if model_type == "deepseek_v3" else "transformers"


def load_policy(cfg: GRPORecipe):
    import torch

    dtype = getattr(torch, cfg.policy.dtype) if cfg.policy.dtype else None
    if policy_impl(cfg) == "ours":
        from model import Transformer

        return Transformer.from_pretrained(cfg.policy.path, dtype=dtype)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(cfg.policy.path, dtype=dtype or "auto")


def _peft_config(cfg: GRPORecipe):
    if cfg.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")


def _resume_checkpoint(cfg: GRPORecipe, run_dir: Path) -> str | None:
    if cfg.resume is False:
        return None
    if isinstance(cfg.resume, str):
        if not Path(cfg.resume).is_dir():
            raise FileNotFoundError(f"grpo.resume: checkpoint {cfg.resume} does not exist")
        return cfg.resume
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None


def _resume_step(checkpoint: str | None) -> int:
    if checkpoint is None:
        return 0
    state = Path(checkpoint) / "trainer_state.json"
    return json.loads(state.read_text()).get("global_step", 0) if state.is_file() else 0


def rollout_backend(cfg: GRPORecipe) -> str:
    """"engine" or "trl" (resolving "auto"); ValueError where engine rollouts cannot work."""
    ours = policy_impl(cfg) == "ours"
    backend = cfg.rollout
    if backend == "auto":
        backend = "engine" if ours and cfg.lora is None and not cfg.trainer.get("use_vllm") else "trl"
    elif backend == "engine":
        if not ours:
            raise ValueError("grpo.rollout: engine generates with our model class; this policy loads "
                             "with transformers (set rollout: trl)")
        if cfg.lora is not None:
            raise ValueError("grpo.rollout: engine samples from the base weights and would ignore the "
                             "LoRA adapter; use rollout: trl with lora")
        if cfg.trainer.get("use_vllm"):
            raise ValueError("grpo.rollout: engine and trainer.use_vllm both generate; pick one")
    if cfg.rollout_mtp and backend != "engine":
        raise ValueError("grpo.rollout_mtp needs engine rollouts (our checkpoint, rollout: engine or auto)")
    return backend


def prepare(cfg: GRPORecipe):
    """Everything before the model: (tokenizer, dataset, reward funcs, weights, GRPOConfig, plan)."""
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    from evals.generation import check_model_path, opens_thinking

    path = check_model_path(cfg.policy.path, "grpo.policy")
    rollout_backend(cfg)
    tokenizer = AutoTokenizer.from_pretrained(path)
    check_chat_template(tokenizer, path)
    dataset = load_prompts(cfg.data)
    check_columns(cfg.rewards, dataset.column_names, where=f"data.path {cfg.data.path}")
    fields = trainer_fields(cfg)
    group_level = cfg.dynamic_sampling.enabled or any(s.name in GROUP_LEVEL_REWARDS for s in cfg.rewards)
    plan = batch_plan(fields, _num_processes(), group_level)
    rendered = tokenizer.apply_chat_template(dataset[0]["prompt"], add_generation_prompt=True, tokenize=False,
                                             **(fields.get("chat_template_kwargs") or {}))
    think_in_prompt = opens_thinking(rendered)
    args = GRPOConfig(output_dir=cfg.output_dir, **fields)
    judge = Judge(think_in_prompt=think_in_prompt, workers=cfg.judge.workers,
                  timeout_s=cfg.judge.timeout_s, options=cfg.judge.options)
    ctx = RewardContext(judge, think_in_prompt, args.num_generations, args.max_completion_length)
    funcs, weights = build_rewards(cfg.rewards, ctx)
    args.reward_weights = weights
    return tokenizer, dataset, funcs, args, plan


def run_grpo(cfg: GRPORecipe) -> Path:
    """Train and return the final model directory (`<output_dir>/final`)."""
    from distill.grpo.dynamic import DynamicSamplingTrainer
    from distill.grpo.metrics import MetricsFile, plot_metrics

    run_dir = Path(cfg.output_dir)
    tokenizer, dataset, funcs, args, plan = prepare(cfg)
    if _is_main():
        print(plan, flush=True)
        save_config(cfg, run_dir / "config.yaml")
    checkpoint = _resume_checkpoint(cfg, run_dir)
    rollout_func = None
    if rollout_backend(cfg) == "engine":
        from distill.grpo.rollout import EngineRollout

        rollout_func = EngineRollout(use_mtp=cfg.rollout_mtp)
    trainer = DynamicSamplingTrainer(
        model=load_policy(cfg), reward_funcs=funcs, args=args, train_dataset=dataset,
        processing_class=tokenizer, peft_config=_peft_config(cfg), rollout_func=rollout_func,
        callbacks=[MetricsFile(run_dir, _resume_step(checkpoint))],
        dynamic_sampling=cfg.dynamic_sampling.enabled, max_rounds=cfg.dynamic_sampling.max_rounds)
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        for f in funcs:
            getattr(getattr(f, "judge", None), "close", lambda: None)()
    final = run_dir / "final"
    trainer.save_model(str(final))
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(final)
        if cfg.plots:
            plot_metrics(run_dir)
    return final
