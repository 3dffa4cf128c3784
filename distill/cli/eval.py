"""`distillery eval`: evaluate models on reasoning benchmarks, and compare finished runs.

    distillery eval --config R [--set k=v ...]          run (or resume) the recipe's `eval:` section
    distillery eval run --config R [--set k=v ...]      the same, spelled as a subcommand
    distillery eval compare RUN [RUN ...] [--out DIR]   one table (printed) and plot of several runs

`eval` is a group whose subcommands are optional: with no subcommand, `--config` runs the eval, so
the plain `distillery eval --config R` that every other stage uses keeps working.
"""

from __future__ import annotations

from distill.cli import _usage, add_config_arguments


def register(subparsers) -> None:
    help = "evaluate models on benchmarks (k samples, pass@1/pass@k/maj@k, lengths, budget curves)"
    parser = subparsers.add_parser(
        "eval", help=help, description=help,
        usage="distillery eval [--config YAML] [--set KEY=VALUE] [{run,compare} ...]",
        epilog="Without a subcommand, --config runs the eval.")
    add_config_arguments(parser)
    parser.set_defaults(func=lambda args: _run(args) if args.config else _usage(parser))
    sub = parser.add_subparsers(metavar="SUBCOMMAND", title="subcommands")

    run = sub.add_parser("run", help="run or resume an eval recipe (same as eval --config)")
    add_config_arguments(run, required=True)
    run.set_defaults(func=_run)

    compare = sub.add_parser("compare", help="put several eval runs in one table and plot")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="eval output directories")
    compare.add_argument("--out", default="runs/eval-compare",
                         help="where compare.md and compare.png go (default: %(default)s)")
    compare.set_defaults(func=_compare)


def _run(args) -> int:
    from evals.config import EvalConfig
    from evals.runner import RESULTS, run_eval
    from recipes.config import load_config

    cfg = load_config(EvalConfig, args.config, args.overrides, section="eval")
    out = run_eval(cfg)
    print(f"wrote {out / RESULTS}, {out / 'report.md'}")
    return 0


def _compare(args) -> int:
    from evals.report import compare

    markdown, plot = compare(args.runs, args.out)
    print(markdown, end="")
    print(f"wrote {plot} and {plot.with_name('compare.md')}")
    return 0
