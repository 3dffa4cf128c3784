"""The `report` stage: one report.md for a whole recipe run.

    report:
      title: Quickstart
      evals: ["${eval}"]

report.md holds the wall time of every stage of the run (from the runner's `_COMPLETE` records)
and every listed eval side by side (`evals.report.compare`: pass@1 ± se, pass@k, maj@k, mean
tokens, truncation, and a plot), followed by each eval's own report.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from distill.runner.registry import StageContext


@dataclass
class ReportConfig:
    """title: the report's heading; evals: eval output directories (usually `${eval}`)."""

    title: str = "Distillery run"
    evals: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.evals:
            raise ValueError("evals: name at least one eval directory (e.g. ${eval})")


def format_seconds(s: float | None) -> str:
    """12.3 -> '12s', 754 -> '12:34', 4000 -> '1:06:40'; None -> '-'."""
    if s is None:
        return "-"
    s = int(round(s))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else (f"{m}:{sec:02d}" if m else f"{sec}s")


def stage_times(run_dir: Path) -> list[tuple[str, float]]:
    """(stage, wall seconds) for every finished stage under run_dir, in the order they finished;
    outputs an earlier config left behind (`<stage>.prev`, state.set_aside) are not this run's."""
    from distill.runner.state import read_record

    found = []
    for marker in Path(run_dir).glob("*/_COMPLETE"):
        if marker.parent.name.endswith(".prev"):
            continue
        record = read_record(marker)
        if record is not None:
            found.append((record.get("finished_unix", 0.0), marker.parent.name, record.get("wall_s")))
    return [(name, wall) for _, name, wall in sorted(found)]


def run(cfg: ReportConfig, ctx: StageContext) -> None:
    from evals.report import compare, write_text_atomic

    lines = [f"# {cfg.title}", "", "## Stages", "", "| stage | wall time |", "|---|---|"]
    times = stage_times(ctx.run_dir)
    lines += [f"| {name} | {format_seconds(wall)} |" for name, wall in times]
    total = sum(w or 0.0 for _, w in times)
    lines += [f"| total | {format_seconds(total)} |", ""]
    markdown, plot = compare(cfg.evals, ctx.dir, overwrite=True)  # the stage owns its directory
    lines += ["## Evals", "", markdown, f"![pass@1]({plot.name})", ""]
    for path in map(Path, cfg.evals):
        own = path / "report.md"
        if own.is_file():
            body = own.read_text(encoding="utf-8").split("\n", 1)[-1]  # drop its title
            rel = os.path.relpath(path, ctx.dir)
            body = body.replace("](", f"]({rel}/")  # its plots' links, seen from here
            lines += [f"## {path.name}: details", "", body.replace("\n## ", "\n### "), ""]
            results = json.loads((path / "results.json").read_text(encoding="utf-8"))
            lines += [f"(eval config: `{path / 'eval_config.yaml'}`, "
                      f"{len(results['results'])} results)", ""]
    out = ctx.dir / "report.md"
    write_text_atomic(out, "\n".join(lines))
    print(f"{ctx.name}: wrote {out}")
