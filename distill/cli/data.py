"""`distillery data synth`: synthetic problems (evals/tasks.py) as JSONL, optionally with solutions.

    distillery data synth --task arithmetic --n 1000 --split train --seed 0 --out data/arith.jsonl \\
        [--difficulty 2] [--style r1|short|answer|none] [--error-rate 0.1]

One row per problem: id, problem_id, question, reference (LaTeX gold), kind ("math"), task, split,
seed, difficulty, style, meta (the worked steps and family extras). With a style, `messages` holds
the [user, assistant] chat turns (the user turn is MATH_PROMPT with the question, the message
`distillery eval` sends; the assistant turn is the solution), and `text` is that conversation in
the chat template's layout (`<|user|>prompt\\n<|assistant|>solution`, pretrain/tokenizer.py
`chat_text`), which the pretraining corpus reader takes as one document: a model pretrained on it
has seen the exact prompt that `eval` and `generate` send with `chat_template: true`. Styles: `r1`
a `<think>` trace then the worked answer, `short` the worked answer alone, `answer` only the boxed
answer (a model that answers without working), `steps` one row per step of the worked solution,
asked as its own one-operation question and answered with that step's working line ("3 - 2 = 1.
The answer is \\boxed{1}.": the facts the working rests on, written as the working writes them,
without the chaining; `question`/`reference` are the step's). `r1` rows also carry `answer` (the
LaTeX the trace boxes) and `planted_error` (whether `--error-rate` made that trace wrong). The
file is written to a temp file and renamed, so a killed run leaves no partial output.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from distill.cli import add_group
from distill.cli.verify import write_jsonl
from model.checkpoint import atomic_write

STYLES = ("r1", "short", "answer", "steps", "none")


def register(subparsers) -> None:
    group = add_group(subparsers, "data", "make datasets: synthetic reasoning problems and solutions")
    synth = group.add_parser("synth", help="synthetic problems with R1-style or short solutions (JSONL)")
    synth.add_argument("--task", required=True,
                       help="task family: arithmetic, linear, word, fractions, modular")
    synth.add_argument("--n", type=int, required=True, help="number of problems")
    synth.add_argument("--split", choices=("train", "test"), default="train",
                       help="train and test never share a problem")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--difficulty", type=int, default=2, help="1..5: more steps, bigger numbers")
    synth.add_argument("--style", choices=STYLES, default="none",
                       help="r1: <think> trace + worked answer; short: worked answer; answer: the boxed "
                            "answer alone; none: problems only")
    synth.add_argument("--error-rate", type=float, default=0.0,
                       help="r1 only: fraction of traces with a planted wrong step (wrong final answer)")
    synth.add_argument("--out", required=True, help="output .jsonl file")
    synth.set_defaults(func=_synth)


def synth_rows(task: str, n: int, split: str, seed: int, difficulty: int, style: str,
               error_rate: float = 0.0) -> list[dict]:
    """The rows `distillery data synth` writes (see the module docstring)."""
    from evals.solutions import answer_solution, r1_trace, short_solution, step_problems
    from evals.tasks import generate
    from evals.types import MATH_PROMPT
    from pretrain.tokenizer import chat_text

    if style not in STYLES:
        raise ValueError(f"--style must be one of {STYLES}, got {style!r}")
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"--error-rate must be in [0, 1], got {error_rate}")
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    rng = random.Random(f"synth|{task}|{split}|{seed}|{difficulty}|{style}")
    rows = []
    for p in generate(task, n, split=split, seed=seed, difficulty=difficulty):
        row = {"id": p.id if style == "none" else f"{p.id}/{style}", "problem_id": p.id,
               "question": p.question, "reference": p.reference, "kind": p.kind, "task": task,
               "split": split, "seed": seed, "difficulty": difficulty, "style": style}
        prompt = MATH_PROMPT.format(question=p.question)
        if style == "r1":
            planted = rng.random() < error_rate
            solution, boxed = r1_trace(p, rng, planted)
            row.update(answer=boxed, planted_error=planted)
        elif style == "short":
            solution = short_solution(p)
        elif style == "answer":
            solution = answer_solution(p)
        if style == "steps":  # one row per step: the facts, not how they chain
            for i, (question, working, answer) in enumerate(step_problems(p)):
                reply = f"{working}. The answer is \\boxed{{{answer}}}."
                messages = [{"role": "user", "content": MATH_PROMPT.format(question=question)},
                            {"role": "assistant", "content": reply}]
                rows.append({**row, "id": f"{row['id']}/{i}", "question": question, "reference": answer,
                             "messages": messages, "text": chat_text(messages)})
            continue
        if style != "none":
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": solution}]
            row.update(messages=messages, text=chat_text(messages))
        row["meta"] = p.meta
        rows.append(row)
    return rows


def _synth(args) -> int:
    if args.error_rate and args.style != "r1":
        print(f"distillery: warning: --error-rate {args.error_rate} is ignored with --style {args.style} "
              "(only r1 traces carry planted errors)", file=sys.stderr)
    rows = synth_rows(args.task, args.n, args.split, args.seed, args.difficulty, args.style,
                      args.error_rate if args.style == "r1" else 0.0)
    out = Path(args.out)
    atomic_write(out, lambda tmp: write_jsonl(tmp, rows))  # JSONL whatever the extension
    planted = sum(bool(r.get("planted_error")) for r in rows)
    extra = f", {planted} with planted errors" if args.style == "r1" else ""
    print(f"wrote {len(rows)} {args.task} {args.split} problems to {out} (style {args.style}{extra})")
    return 0
