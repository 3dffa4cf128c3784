"""`distillery pretrain --config R [--set k=v] [--resume] [--nproc N]`.

Ends with a summary read back from `<out_dir>/metrics.jsonl`: where the model is, the final train
loss, the last held-out loss and the mean tokens/s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from distill.cli import add_config_arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser("pretrain", help="pretrain a DeepSeek-V3-style base model",
                                   description="Pretrain from the recipe's `pretrain:` section.")
    add_config_arguments(parser, required=True, section="pretrain", example="train.max_steps=50",
                         config="pretrain.config:PretrainConfig")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes on this machine (launches torchrun; DDP or FSDP2; "
                             "default: %(default)s)")
    parser.set_defaults(func=_pretrain)


def _pretrain(args) -> int:
    from pretrain.config import PretrainConfig
    from recipes.config import ConfigError, blame_override, load_config

    cfg = load_config(PretrainConfig, args.config, args.overrides, section="pretrain")
    try:  # checked here too, so that an error caused by a --set names the --set
        cfg.validate(args.config)
    except ValueError as e:
        raise ConfigError(blame_override(str(e), args.config, args.overrides)) from e
    forwarded = ["--config", args.config] + [f"--set={o}" for o in args.overrides]
    forwarded += ["--resume"] if args.resume else []
    if args.nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={args.nproc}", "-m", "pretrain.train", *forwarded]
        code = subprocess.call(cmd)
    else:
        from pretrain.train import main
        code = main(forwarded)
    if code == 0:
        print(summary(cfg.out_dir), end="")
    return code


def summary(out_dir: str | Path) -> str:
    """The closing lines of a pretraining run, from its metrics.jsonl (empty if it has none)."""
    out_dir = Path(out_dir)
    path = out_dir / "metrics.jsonl"
    if not path.is_file():
        return ""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = [r for r in rows if r.get("loss") is not None]
    if not steps:
        return ""
    last = steps[-1]
    val = [r for r in rows if r.get("val_loss") is not None]
    time_s = sum(r.get("step_s") or 0.0 for r in steps)
    tokens = sum((r.get("tokens_per_s") or 0.0) * (r.get("step_s") or 0.0) for r in steps)
    final = out_dir / "final"
    where = final if final.is_dir() else out_dir / "checkpoints"
    lines = [f"model: {where}" + ("" if final.is_dir() else " (not finished: no final/ yet)"),
             f"step {last['step']}: train loss {last['loss']:.4f}" +
             (f", held-out loss {val[-1]['val_loss']:.4f} (step {val[-1]['step']})" if val else
              ", no held-out loss (data.val_fraction or train.eval_every is 0)"),
             f"throughput: {tokens / time_s:,.0f} tokens/s over {len(steps)} logged steps"
             if time_s else "throughput: -"]
    return "\n".join(lines) + "\n"
