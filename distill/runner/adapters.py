"""How `distillery run` calls each stage: `run(cfg, ctx)` for every kind in registry.STAGES.

Each adapter calls the stage's own entry point, the one its command uses, with the config the
runner loaded (its output path and wiring already filled in), and prints the stage's closing
summary. Resuming is the stage's business: `ctx.resume` says an earlier attempt with the same
config left files behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from distill.runner.registry import StageContext, resolve


def tokenizer(cfg, ctx: StageContext) -> None:
    from distill.cli.tokenizer import run

    run(cfg)  # written atomically: a killed attempt leaves nothing to resume


def pretrain(cfg, ctx: StageContext) -> None:
    from distill.cli.pretrain import summary
    from pretrain.train import run

    resume = (Path(cfg.out_dir) / "checkpoints" / "latest").exists()
    run(cfg, resume=resume, where=ctx.name)
    print(summary(cfg.out_dir), end="")


def evaluate(cfg, ctx: StageContext) -> None:
    from evals.report import headline_table
    from evals.runner import RESULTS, run_eval

    out = run_eval(cfg)  # samples.jsonl is the cache: a rerun generates only what is missing
    results = json.loads((out / RESULTS).read_text(encoding="utf-8"))["results"]
    print(headline_table(results), end="")


def _call(path: str, kind: str):
    """An adapter for a stage whose entry point is `function(cfg) -> Path`. A stopped attempt
    sets the config's `resume` flag where it has one (GRPO: continue from the last checkpoint);
    generate and filter resume from their row stores by themselves."""
    def run(cfg, ctx: StageContext) -> None:
        if ctx.resume and getattr(cfg, "resume", None) is False:
            cfg.resume = True
        out = resolve(path, kind)(cfg)
        print(f"{ctx.name}: wrote {out}")
    return run


# Built on other branches; each takes its config and returns its output directory.
generate = _call("distill.generate:run_generate", "generate")
filter = _call("distill.filter:run_filter", "filter")  # noqa: A001 - the stage's name
sft = _call("distill.sft:run_sft", "sft")
grpo = _call("distill.grpo:run_grpo", "grpo")
