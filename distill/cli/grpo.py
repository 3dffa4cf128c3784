"""`distillery grpo --config R [--set k=v ...]`: GRPO with verifier and length rewards on TRL.

    distillery grpo --config recipes/grpo/tiny.yaml
    distillery grpo rewards          list the reward registry (name, columns, origin, arguments)

Multi-process: `torchrun --nproc_per_node N -m distill.cli grpo --config R` or
`accelerate launch [--config_file ...] -m distill.cli grpo --config R` (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import os

from distill.cli import _usage, add_config_arguments


def register(subparsers) -> None:
    help = "GRPO on TRL with verifier, format, language and length rewards (Kimi, cosine, DAPO, LCPO)"
    parser = subparsers.add_parser("grpo", help=help, description=help,
                                   usage="distillery grpo [--config YAML] [--set KEY=VALUE] [rewards]")
    add_config_arguments(parser)
    parser.set_defaults(func=lambda args: _run(args) if args.config else _usage(parser))
    sub = parser.add_subparsers(metavar="SUBCOMMAND", title="subcommands")
    rewards = sub.add_parser("rewards", help="list the rewards a recipe can name")
    rewards.set_defaults(func=_rewards)


def _run(args) -> int:
    from distill.grpo import GRPORecipe, run_grpo
    from recipes.config import load_config

    cfg = load_config(GRPORecipe, args.config, args.overrides, section="grpo")
    final = run_grpo(cfg)
    if os.environ.get("RANK", "0") == "0":
        print(f"wrote {final}")
    return 0


def _rewards(args) -> int:
    from distill.rewards import REWARDS
    from distill.rewards.registry import reward_arguments

    for name, info in REWARDS.items():
        params = ", ".join(f"{k}={p.default!r}" if p.default is not p.empty else k
                           for k, p in reward_arguments(name).items())
        print(f"{name:13s} columns={list(info.columns)}  [{info.origin}]\n{'':13s} args: {params or '-'}")
    return 0
