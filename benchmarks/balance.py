"""MaxVio with and without the auxiliary-loss-free bias update over a real pretraining run
(the tiny recipe, CPU): same data, seed and config; only balance.bias_update_speed differs.

    python benchmarks/balance.py [--steps 300] [--gamma 1e-3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit  # noqa: E402

from pretrain.config import PretrainConfig  # noqa: E402
from pretrain.synthetic import write_corpus  # noqa: E402
from pretrain.tokenizer import build_byte_tokenizer, save_tokenizer  # noqa: E402
from pretrain.train import run  # noqa: E402
from recipes.config import load_config  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/pretrain/tiny.yaml")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--gamma", type=float, default=1e-3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="balance-"))
    write_corpus(root / "corpus.jsonl", num_docs=3000)
    save_tokenizer(build_byte_tokenizer(), root / "tok")
    curves = {}
    for name, gamma in (("bias_update", args.gamma), ("no_update", 0.0)):
        overrides = [f"out_dir={root / name}", f"data.sources=[{root / 'corpus.jsonl'}]",
                     f"data.tokenizer={root / 'tok'}", f"data.shard_dir={root / 'shards'}",
                     f"train.max_steps={args.steps}", f"train.save_every={args.steps}",
                     "train.eval_every=0", f"balance.bias_update_speed={gamma}",
                     "balance.bias_freeze_fraction=0.0"]
        run(load_config(PretrainConfig, args.recipe, overrides, section="pretrain"))
        rows = [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]
        curves[name] = [r["maxvio_mean"] for r in rows]
    last = {k: sum(v[-20:]) / 20 for k, v in curves.items()}  # mean over the last 20 steps
    ratio = last["bias_update"] / last["no_update"]
    print(f"MaxVio (mean of last 20 steps): with bias update {last['bias_update']:.3f}, "
          f"without {last['no_update']:.3f}, ratio {ratio:.2f}")
    shutil.rmtree(root, ignore_errors=True)
    emit({"benchmark": "balance", "recipe": args.recipe, "steps": args.steps, "gamma": args.gamma,
          "maxvio_with": round(last["bias_update"], 4), "maxvio_without": round(last["no_update"], 4),
          "ratio": round(ratio, 3),
          "maxvio_with_at": {s: round(curves["bias_update"][s - 1], 3) for s in (1, 50, 100, 200, args.steps)},
          "maxvio_without_at": {s: round(curves["no_update"][s - 1], 3) for s in (1, 50, 100, 200, args.steps)}})


if __name__ == "__main__":
    main()
