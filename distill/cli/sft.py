"""`distillery sft --config R [--set k=v] [--resume] [--nproc N --accelerate-config FILE]`.

Multi-process: `--nproc N` alone starts N processes with torchrun (plain DDP; gloo on CPU, as
the 2-process test runs it); with `--accelerate-config` it goes through `accelerate launch` and a
config from recipes/accelerate/ (DDP, DeepSpeed ZeRO-2/3, FSDP). Each process runs this command.
"""

from __future__ import annotations

import subprocess
import sys

from distill.cli import add_config_arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sft", help="style- and length-controlled SFT on TRL (our checkpoints or any HF model)",
        description="Supervised fine-tuning from the recipe's `sft:` section.")
    add_config_arguments(parser, required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes on this machine (torchrun, or accelerate launch with "
                        "--accelerate-config)")
    parser.add_argument("--accelerate-config", metavar="YAML",
                        help="accelerate config for --nproc > 1 (recipes/accelerate/*.yaml)")
    parser.set_defaults(func=_sft)


def _sft(args) -> int:
    if args.accelerate_config and args.nproc < 2:
        raise ValueError("--accelerate-config needs --nproc N (N >= 2)")
    if args.nproc > 1:
        if args.accelerate_config:
            cmd = [sys.executable, "-m", "accelerate.commands.launch",
                   f"--num_processes={args.nproc}", f"--config_file={args.accelerate_config}"]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={args.nproc}"]
        cmd += ["-m", "distill.cli", "sft", "--config", args.config]
        cmd += [f"--set={o}" for o in args.overrides] + (["--resume"] if args.resume else [])
        return subprocess.call(cmd)
    from distill.sft import SFTRecipe, run_sft
    from recipes.config import load_config

    overrides = list(args.overrides) + (["resume=true"] if args.resume else [])
    cfg = load_config(SFTRecipe, args.config, overrides, section="sft")
    final = run_sft(cfg)
    print(f"wrote {final}")
    return 0
