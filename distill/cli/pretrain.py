"""`distillery pretrain --config R [--set k=v] [--resume] [--nproc N]`."""

from __future__ import annotations

import subprocess
import sys

from distill.cli import add_config_arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser("pretrain", help="pretrain a DeepSeek-V3-style base model",
                                   description="Pretrain from the recipe's `pretrain:` section.")
    add_config_arguments(parser, required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes on this machine (launches torchrun; DDP or FSDP2)")
    parser.set_defaults(func=_pretrain)


def _pretrain(args) -> int:
    forwarded = ["--config", args.config] + [f"--set={o}" for o in args.overrides]
    forwarded += ["--resume"] if args.resume else []
    if args.nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={args.nproc}", "-m", "pretrain.train", *forwarded]
        return subprocess.call(cmd)
    from pretrain.train import main
    return main(forwarded)
