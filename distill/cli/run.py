"""`distillery run RECIPE.yaml [--only S] [--from S] [--dry-run] [--set stage.key=v]`.

Thin: the runner lives in distill/runner/ (its docstrings describe the recipe format, wiring,
skipping and resuming).
"""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    from distill.runner.registry import STAGES

    kinds = ", ".join(STAGES)
    parser = subparsers.add_parser(
        "run", help="run a whole recipe: its stages in order, finished ones skipped",
        description="Run the stages RECIPE's `run.stages` lists, in order, each into "
                    "<run.root>/<run.name>/<stage>/. A finished stage is skipped, a stopped one "
                    "resumes, a stage whose config (or input) changed reruns. Stage kinds: "
                    f"{kinds}; a label after a dot runs a kind again (pretrain.teacher).",
        epilog="example: distillery run recipes/quickstart.yaml --dry-run "
               "--set pretrain.teacher.train.max_steps=50")
    parser.add_argument("recipe", metavar="RECIPE.yaml", help="the recipe (a `run:` section and "
                                                              "one section per stage)")
    parser.add_argument("--only", action="append", metavar="STAGE",
                        help="run just this stage, even if finished (repeatable); the stages it "
                             "reads from must be finished")
    parser.add_argument("--from", dest="start", metavar="STAGE",
                        help="rerun this stage and every later one, even if finished")
    parser.add_argument("--dry-run", action="store_true",
                        help="check every stage's config, paths and wiring; run nothing")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="STAGE.KEY=VALUE",
                        help="override one value of one stage's section, e.g. --set "
                             "pretrain.teacher.train.max_steps=50 (VALUE is read as YAML; "
                             "repeatable)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from distill.runner import describe, execute, make_plan, select
    from distill.runner.execute import problems

    plan = make_plan(args.recipe, args.overrides)
    if args.dry_run:
        chosen = select(plan, args.only, args.start)
        print(describe(plan, chosen, forced=bool(args.only or args.start)), end="")
        found = problems(plan, chosen)
        if found:
            raise ValueError(f"dry run found {len(found)} problem(s):\n  " + "\n  ".join(found))
        print("dry run: every stage checked; nothing was run")
        return 0
    try:
        execute(plan, args.only, args.start)
    except KeyboardInterrupt:
        print("distillery: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0
