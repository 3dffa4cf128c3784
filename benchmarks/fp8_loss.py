"""FP8 (emulated) vs fp32 training loss on the tiny recipe, CPU: same data, seed and config;
only model.fp8 differs. Reports the relative gap of the final losses (mean of the last 20 steps).

    python benchmarks/fp8_loss.py [--steps 300]
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
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fp8-"))
    write_corpus(root / "corpus.jsonl", num_docs=3000)
    save_tokenizer(build_byte_tokenizer(), root / "tok")
    losses = {}
    for name, extra in (("fp32", ["model.fp8=false"]),
                        ("fp8", ["model.fp8=true", "model.fp8_backend=emulated"]),
                        ("fp8_bf16_moments", ["model.fp8=true", "model.fp8_backend=emulated",
                                              "optim.moments_dtype=bf16"])):
        overrides = [f"out_dir={root / name}", f"data.sources=[{root / 'corpus.jsonl'}]",
                     f"data.tokenizer={root / 'tok'}", f"data.shard_dir={root / 'shards'}",
                     f"train.max_steps={args.steps}", f"train.save_every={args.steps}",
                     "train.eval_every=0", *extra]
        run(load_config(PretrainConfig, args.recipe, overrides, section="pretrain"))
        rows = [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [r["lm_loss"] for r in rows]
    final = {k: sum(v[-20:]) / 20 for k, v in losses.items()}
    gaps = {k: (final[k] - final["fp32"]) / final["fp32"] for k in final if k != "fp32"}
    for k, v in final.items():
        print(f"{k:>18}: final main loss {v:.4f}" + (f"  ({gaps[k]:+.2%} vs fp32)" if k in gaps else ""))
    shutil.rmtree(root, ignore_errors=True)
    emit({"benchmark": "fp8_loss", "recipe": args.recipe, "steps": args.steps,
          **{f"final_{k}": round(v, 4) for k, v in final.items()},
          **{f"rel_gap_{k}": round(v, 5) for k, v in gaps.items()},
          "curves_every_50": {k: [round(v[i], 4) for i in range(0, len(v), 50)] for k, v in losses.items()}})


if __name__ == "__main__":
    main()
