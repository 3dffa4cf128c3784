"""Checks that stop a GRPO run before any model work, with one message that explains.

    plan = batch_plan(trainer_fields, num_processes, group_level)   # str, or ValueError
    check_chat_template(tokenizer, path)

The batch arithmetic (distillation-methods §6 item 9: the most reported GRPO setup error) is
spelled out in one message printed before training: completions per optimizer step, prompts x
generations, how often TRL generates, and what divides what. TRL's own check
(GRPOConfig.__post_init__) only says "generation_batch_size must be divisible by num_generations".
"""

from __future__ import annotations

import dataclasses


def _trl_default(name: str):
    from trl import GRPOConfig

    f = next(f for f in dataclasses.fields(GRPOConfig) if f.name == name)
    return f.default


def _get(fields: dict, name: str):
    return fields[name] if name in fields and fields[name] is not None else _trl_default(name)


def batch_plan(fields: dict, num_processes: int = 1, group_level: bool = False) -> str:
    """The run's batch arithmetic in words; ValueError (same words + the fix) when it cannot work.
    group_level: a reward or dynamic sampling needs each process to hold whole prompt groups."""
    per_device = _get(fields, "per_device_train_batch_size")
    accum = _get(fields, "gradient_accumulation_steps")
    G = _get(fields, "num_generations")
    iterations = _get(fields, "num_iterations")
    gen_bs, spg = fields.get("generation_batch_size"), fields.get("steps_per_generation")
    if gen_bs is not None and spg is not None:
        raise ValueError("trainer: set generation_batch_size or steps_per_generation, not both")
    step_bs = per_device * num_processes
    if gen_bs is not None:
        if gen_bs % step_bs:
            raise ValueError(f"trainer.generation_batch_size={gen_bs} must be a multiple of "
                             f"{num_processes} process(es) x per_device_train_batch_size {per_device} = {step_bs}")
        spg = gen_bs // step_bs
    spg = spg or accum
    gen_bs = step_bs * spg
    optim_bs = step_bs * accum
    plan = (f"GRPO batch: {num_processes} process(es) x per_device_train_batch_size {per_device} x "
            f"gradient_accumulation_steps {accum} = {optim_bs} completions per optimizer step. "
            f"TRL generates every {spg} micro-step(s): generation batch {num_processes} x {per_device} x "
            f"{spg} = {gen_bs} completions = {gen_bs / G:g} prompts x num_generations {G}, "
            f"reused for num_iterations {iterations} pass(es); that is {optim_bs / G:g} prompt groups "
            f"per optimizer step.")
    if G < 2:
        raise ValueError(plan + f" num_generations must be >= 2 (advantages compare a prompt's samples).")
    if gen_bs % G:
        ok = [b for b in range(1, 4 * G + 1) if (b * num_processes * spg) % G == 0][:3]
        raise ValueError(plan + f" The generation batch ({gen_bs}) must split into whole groups of "
                         f"{G}: change num_generations, or use per_device_train_batch_size in {ok} "
                         f"(or raise steps_per_generation / gradient_accumulation_steps).")
    local = per_device * spg
    if group_level and num_processes > 1 and local % G:
        raise ValueError(plan + f" Each process holds {local} completions per generation, which cuts "
                         f"prompt groups of {G} across processes; the Kimi reward and dynamic sampling "
                         f"need whole groups per process: make per_device_train_batch_size x "
                         f"steps_per_generation a multiple of {G}.")
    return plan


def check_chat_template(tokenizer, path) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"grpo.policy {path}: the tokenizer has no chat template, and GRPO renders "
                         "the conversational prompts with it. Save one with the tokenizer (`distillery "
                         "model init` and `distillery tokenizer` write a think-aware template).")
