"""`distillery sft --config R [--set k=v] [--resume] [--nproc N --accelerate-config FILE]`.

Multi-process runs go through `accelerate launch` with a config from recipes/accelerate/ (DDP,
DeepSpeed ZeRO-2/3, FSDP); each process then runs this same command.
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
                        help="processes on this machine (launches `accelerate launch`)")
    parser.add_argument("--accelerate-config", metavar="YAML",
                        help="accelerate config for --nproc > 1 (recipes/accelerate/*.yaml)")
    parser.set_defaults(func=_sft)


def _sft(args) -> int:
    if args.nproc > 1:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", f"--num_processes={args.nproc}"]
        if args.accelerate_config:
            cmd.append(f"--config_file={args.accelerate_config}")
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
