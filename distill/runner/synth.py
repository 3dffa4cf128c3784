"""The `synth` stage: named sets of synthetic problems, each one `distillery data synth` call.

    synth:
      sets:
        teacher_traces: {task: arithmetic, n: 4000, style: r1, difficulty: 1, error_rate: 0.1}
        student_answers: {task: arithmetic, n: 6000, style: short, difficulty: 1}

writes `<stage dir>/teacher_traces.jsonl` and `student_answers.jsonl` (rows as `data synth`
documents them); later stages read them as `${synth.teacher_traces}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from distill.runner.registry import StageContext


@dataclass
class SynthSet:
    """One `distillery data synth` call (its flags, same names)."""

    task: str = "arithmetic"
    n: int = 100
    split: Literal["train", "test"] = "train"
    seed: int = 0
    difficulty: int = 2
    style: Literal["r1", "short", "answer", "steps", "none"] = "none"
    error_rate: float = 0.0

    def __post_init__(self):
        from evals.tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {sorted(TASKS)}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {self.error_rate}")
        if self.error_rate and self.style != "r1":
            raise ValueError(f"error_rate {self.error_rate} needs style r1 (only r1 traces carry "
                             "planted errors)")


@dataclass
class SynthConfig:
    """sets: output name -> SynthSet; each becomes `<name>.jsonl` in the stage directory."""

    sets: dict[str, SynthSet] = field(default_factory=dict)

    def __post_init__(self):
        if not self.sets:
            raise ValueError("sets: name at least one set")
        bad = [n for n in self.sets if not n.replace("_", "").replace("-", "").isalnum()]
        if bad:
            raise ValueError(f"sets: names become file names; use letters, digits, _ and - ({bad})")


def run(cfg: SynthConfig, ctx: StageContext) -> None:
    from distill.cli.data import synth_rows
    from distill.cli.verify import write_jsonl
    from model.checkpoint import atomic_write

    for name, s in cfg.sets.items():
        rows = synth_rows(s.task, s.n, s.split, s.seed, s.difficulty, s.style, s.error_rate)
        out = ctx.dir / f"{name}.jsonl"
        atomic_write(out, lambda tmp, rows=rows: write_jsonl(tmp, rows))
        print(f"{ctx.name}: wrote {len(rows)} {s.task} {s.split} problems (style {s.style}) to {out}")
