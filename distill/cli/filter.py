"""`distillery filter`: verifier-based rejection sampling of teacher samples.

    distillery filter --config RECIPE.yaml [--set key=value ...] [--in FILE ...] [--out DIR]

Reads the recipe's `filter:` section (distill/filter/config.py); `--in` replaces its inputs and
`--out` its output directory. Writes sft.jsonl + sft/, rl_prompts.jsonl, rejected.jsonl,
report.md, summary.json and plots; re-running the same command resumes.
"""

from __future__ import annotations

from distill.cli import add_config_arguments


def register(subparsers) -> None:
    help = "verify, clean, dedup and select teacher samples into an SFT set and an RL prompt set"
    p = subparsers.add_parser("filter", help=help, description=help)
    add_config_arguments(p)
    p.add_argument("--in", dest="inputs", action="append", default=[], metavar="FILE",
                   help="sample file or directory (repeatable; replaces the recipe's inputs)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from distill.filter import FilterConfig, run_filter
    from recipes.config import load_config

    cfg = load_config(FilterConfig, args.config, args.overrides, section="filter")
    if args.inputs:
        cfg.inputs = list(args.inputs)
    if args.out:
        cfg.out = args.out
    if args.no_progress:
        cfg.progress = False
    out = run_filter(cfg)
    summary = (out / "summary.json").read_text(encoding="utf-8")
    import json

    s = json.loads(summary)
    print(f"{s['samples']} samples, {s['kept']} kept, {s['rejected']} rejected, "
          f"{s['bad_rows']} bad rows, {s['rl_prompts']} RL prompts -> {out}")
    return 0
