"""`distillery eval`: evaluate models on reasoning benchmarks, and compare finished runs.

    distillery eval --config R [--set k=v ...]          run (or resume) the recipe's `eval:` section
    distillery eval run --config R [--set k=v ...]      the same, spelled as a subcommand
    distillery eval compare RUN [RUN ...] [--out DIR] [--force]
                                                        one table (printed) and plot of several runs

`eval` is a group whose subcommands are optional: with no subcommand, `--config` runs the eval, so
the plain `distillery eval --config R` that every other stage uses keeps working. A finished eval
prints its headline table (pass@1 ± se, pass@k, mean completion tokens per model and benchmark).
`compare` refuses to replace an existing comparison in `--out` unless `--force`.
"""

from __future__ import annotations

from distill.cli import _usage, add_config_arguments

CONFIG = "evals.config:EvalConfig"
EXAMPLE = "sampling.max_new_tokens=256"


def register(subparsers) -> None:
    help = "evaluate models on benchmarks (k samples, pass@1/pass@k/maj@k, lengths, budget curves)"
    parser = subparsers.add_parser(
        "eval", help=help, description=help,
        usage="distillery eval [--config YAML] [--set KEY=VALUE] [{run,compare} ...]",
        epilog="Without a subcommand, --config runs the eval.")
    add_config_arguments(parser, section="eval", example=EXAMPLE, config=CONFIG)
    parser.set_defaults(func=lambda args: _run(args) if args.config else _usage(parser))
    # The group's hand-written usage would otherwise prefix every subcommand's usage line.
    sub = parser.add_subparsers(metavar="SUBCOMMAND", title="subcommands", prog="distillery eval")

    run = sub.add_parser("run", help="run or resume an eval recipe (same as eval --config)",
                         description="Run or resume the recipe's `eval:` section.")
    add_config_arguments(run, required=True, section="eval", example=EXAMPLE, config=CONFIG)
    run.set_defaults(func=_run)

    compare = sub.add_parser("compare", help="put several eval runs in one table and plot",
                             description="Put several eval runs (their results.json) in one "
                                         "table and one plot: OUT/compare.md, OUT/compare.png.")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="eval output directories")
    compare.add_argument("--out", default="runs/eval-compare",
                         help="where compare.md and compare.png go (default: %(default)s)")
    compare.add_argument("--force", action="store_true",
                         help="replace a comparison already in --out (default: refuse)")
    compare.set_defaults(func=_compare)


def _run(args) -> int:
    import json

    from evals.config import EvalConfig
    from evals.report import headline_table
    from evals.runner import RESULTS, run_eval
    from recipes.config import load_config

    cfg = load_config(EvalConfig, args.config, args.overrides, section="eval")
    out = run_eval(cfg)
    results = json.loads((out / RESULTS).read_text(encoding="utf-8"))["results"]
    print(headline_table(results), end="")
    print(f"wrote {out / RESULTS}, {out / 'report.md'}")
    return 0


def _compare(args) -> int:
    from evals.report import compare

    markdown, plot = compare(args.runs, args.out, overwrite=args.force)
    print(markdown, end="")
    print(f"wrote {plot} and {plot.with_name('compare.md')}")
    return 0
