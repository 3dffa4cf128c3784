"""Run a checked plan: skip finished stages, resume a stopped one, show progress, sum up.

Per stage, in the recipe's order (state.py describes the files):
- complete with the same config hash: skipped;
- an attempt with the same hash stopped early (killed): run again with `ctx.resume`, so a stage
  that checkpoints (pretrain) or caches rows (eval) continues where it was;
- outputs of another config (the recipe or an upstream stage changed): moved to
  `<stage>.prev` and run from scratch;
- `--only S` / `--from S`: the selected stages run even when complete (their old outputs are
  moved to `.prev`); the stages they read from must be complete already.

Progress: one line as each stage starts (stage k of n, elapsed, ETA from each stage's wall time
in earlier runs of this recipe), and a summary table at the end, also when a stage fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from distill.runner.plan import Plan, Stage
from distill.runner.registry import StageContext, resolve
from distill.runner.report import format_seconds
from distill.runner.state import CONFIG, STARTED, finish, read_timings, set_aside, status, write_record
from recipes.config import save_config


@dataclass
class Outcome:
    stage: str
    status: str  # ran, resumed, skipped (complete), failed, interrupted, not run, not selected
    wall_s: float | None = None
    output: str = ""


def select(plan: Plan, only: list[str] | None, start: str | None) -> list[str]:
    """Names of the stages to run, in order; the stages they read from must be complete."""
    names = [s.name for s in plan.stages]
    if only and start:
        raise ValueError("--only and --from exclude each other")
    if only:
        wanted = {plan.stage(n).name for n in only}
        chosen = [n for n in names if n in wanted]  # the recipe's order, whatever the flags' order
    elif start:
        chosen = names[names.index(plan.stage(start).name):]
    else:
        return names
    for name in chosen:
        for up in plan.stage(name).upstream:
            src = plan.stage(up)
            if up not in chosen and (src.digest is None or status(src.dir, src.digest) != "complete"):
                raise ValueError(f"stage {name} reads {up}'s outputs, which are not complete "
                                 f"({src.dir}): run {up} first (--from {up}), or drop --only/--from")
    return chosen


def problems(plan: Plan, chosen: list[str]) -> list[str]:
    """Why the chosen stages cannot run: absent modules, missing input paths."""
    out = []
    for s in plan.stages:
        if s.name in chosen:
            out += ([f"{s.name}: {s.error}"] if s.error else []) + [f"{plan.recipe}: {m}" for m in s.missing]
    return out


def check_runnable(plan: Plan, chosen: list[str]) -> None:
    found = problems(plan, chosen)
    if found:
        raise ValueError("cannot run (nothing was started):\n  " + "\n  ".join(found))


def _eta(plan: Plan, remaining: list[str]) -> str:
    timings = read_timings(plan.run_dir)
    known = [timings[n] for n in remaining if n in timings]
    unknown = len(remaining) - len(known)
    if not known:
        return "ETA unknown (no earlier timings)"
    more = f" + {unknown} stage(s) never timed" if unknown else ""
    return f"ETA {format_seconds(sum(known))}{more}"


def _run_stage(plan: Plan, stage: Stage, forced: bool) -> str:
    """Run one stage (or skip it); returns its outcome status."""
    state = status(stage.dir, stage.digest)
    if state == "complete" and not forced:
        return "skipped (complete)"
    if state in ("stale", "complete"):
        prev = set_aside(stage.dir)
        why = "rerun asked for" if state == "complete" else "config or inputs changed"
        print(f"  {stage.name}: {why}; old outputs moved to {prev}", flush=True)
        state = "new"
    for up in stage.upstream:
        for path, _ in plan.stage(up).outputs.values():
            if not path.exists():
                raise FileNotFoundError(f"stage {stage.name} reads {path} ({up}), which is missing")
    stage.dir.mkdir(parents=True, exist_ok=True)
    save_config(stage.cfg, stage.dir / CONFIG)
    write_record(stage.dir / STARTED, {"stage": stage.name, "config_hash": stage.digest})
    ctx = StageContext(stage.name, stage.dir, plan.run_dir, resume=state == "partial")
    began = time.perf_counter()
    resolve(stage.type.run, stage.type.kind)(stage.cfg, ctx)
    wall = time.perf_counter() - began
    missing = [str(p) for p, _ in stage.outputs.values() if not p.exists()]
    if missing:
        raise RuntimeError(f"stage {stage.name} finished without writing {', '.join(missing)}")
    finish(stage.dir, plan.run_dir, stage.name, stage.digest, wall,
           {k: str(p) for k, (p, _) in stage.outputs.items()})
    return "resumed" if ctx.resume else "ran"


def execute(plan: Plan, only: list[str] | None = None, start: str | None = None) -> list[Outcome]:
    """Run the selected stages; prints progress and the summary table; returns the outcomes."""
    chosen = select(plan, only, start)
    check_runnable(plan, chosen)
    forced = bool(only or start)
    outcomes = {s.name: Outcome(s.name, "not run" if s.name in chosen else "not selected")
                for s in plan.stages}
    t0 = time.perf_counter()
    try:
        for k, name in enumerate(chosen, 1):
            stage = plan.stage(name)
            print(f"[{k}/{len(chosen)}] {name}: {stage.type.help} | elapsed "
                  f"{format_seconds(time.perf_counter() - t0)}, {_eta(plan, chosen[k - 1:])}",
                  flush=True)
            outcomes[name].status = "failed"
            began = time.perf_counter()
            outcomes[name].status = _run_stage(plan, stage, forced)
            if outcomes[name].status != "skipped (complete)":
                outcomes[name].wall_s = time.perf_counter() - began
            main = stage.outputs.get("")
            outcomes[name].output = str(main[0]) if main else str(stage.dir)
    except KeyboardInterrupt:
        for o in outcomes.values():
            o.status = "interrupted" if o.status == "failed" else o.status
        raise
    finally:
        print(summary_table(list(outcomes.values()), time.perf_counter() - t0), end="", flush=True)
    return list(outcomes.values())


def summary_table(outcomes: list[Outcome], total_s: float) -> str:
    rows = [("stage", "status", "wall", "output")]
    rows += [(o.stage, o.status, format_seconds(o.wall_s), o.output) for o in outcomes]
    rows.append(("total", "", format_seconds(total_s), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["", "run summary:"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3] for r in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def describe(plan: Plan, chosen: list[str], forced: bool = False) -> str:
    """The --dry-run report: per stage its state, what it would do, its wiring and outputs."""
    lines = [f"recipe {plan.recipe}: {len(plan.stages)} stages into {plan.run_dir}/"]
    for k, s in enumerate(plan.stages, 1):
        if s.error:
            state = f"NOT RUNNABLE: {s.error}"
        elif s.name not in chosen:
            state = "not selected"
        else:
            now = status(s.dir, s.digest)
            state = {"complete": "complete: would skip", "partial": "stopped early: would resume",
                     "stale": "changed: would rerun", "new": "would run"}[now]
            if now == "complete" and forced:
                state = "complete: would rerun (selected by --only/--from)"
        lines.append(f"[{k}/{len(plan.stages)}] {s.name} ({s.type.kind}) - {state}")
        lines += [f"      {w}" for w in s.wired]
        lines += [f"      MISSING INPUT {m}" for m in s.missing]
        for name, (path, kind) in (s.outputs or {}).items():
            lines.append(f"      -> {'${' + s.name + ('.' + name if name else '') + '}'} = {path} ({kind})")
    return "\n".join(lines) + "\n"
