"""A small synthetic corpus for trying the pretraining loop: arithmetic facts and worked sums,
deterministic from a seed. (The quickstart's reasoning corpora come from `evals`' task families.)

    python -m pretrain.synthetic --out runs/tiny-corpus.jsonl [--docs 3000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def document(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(2, 8)):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        op = rng.choice("+-*")
        value = a + b if op == "+" else a - b if op == "-" else a * b
        lines.append(f"{a} {op} {b} = {value}")
    total = sum(int(line.split("= ")[1]) for line in lines)
    lines.append(f"The sum of the results is {total}.")
    return "\n".join(lines)


def write_corpus(path: str | Path, num_docs: int = 3000, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for _ in range(num_docs):
            f.write(json.dumps({"text": document(rng)}) + "\n")
    tmp.replace(path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"wrote {write_corpus(args.out, args.docs, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
