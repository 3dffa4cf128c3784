#!/usr/bin/env bash
# One prepared GPU run of the pretraining loop (<= 5 minutes on an H200):
# synthetic corpus -> byte-level tokenizer -> shards -> 300 steps of the 0.74B MoE with MTP,
# bias balancing, per-layer torch.compile. Copies metrics.jsonl to $OUT (or ./runs) and prints a
# JSON summary line last.
set -euo pipefail
OUT=${OUT:-runs}
export PYTHONPATH=${PYTHONPATH:-.}
python -m pretrain.synthetic --out runs/h200-corpus.jsonl --docs 60000
python -c "from pretrain.tokenizer import build_byte_tokenizer, save_tokenizer; save_tokenizer(build_byte_tokenizer(), 'runs/h200-tokenizer')"
rm -rf runs/h200-pretrain
python -m pretrain.train --config recipes/pretrain/h200_moe_0p7b.yaml "$@" 2> >(grep -v "pretrain:" >&2)
cp runs/h200-pretrain/metrics.jsonl "$OUT/pretrain_metrics.jsonl"
python - <<'PY'
import json, statistics
rows = [json.loads(l) for l in open("runs/h200-pretrain/metrics.jsonl")]
steady = [r for r in rows if r["step"] > 20]
summary = {"benchmark": "pretrain_h200", "steps": rows[-1]["step"],
           "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in steady),
           "mfu_median": statistics.median(r["mfu"] for r in steady if r["mfu"] is not None),
           "peak_mem_gib": max(r.get("peak_mem_gib", 0) for r in rows),
           "loss_first": rows[0]["loss"], "loss_last": rows[-1]["loss"],
           "val_loss": [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r],
           "maxvio_mean_last": rows[-1].get("maxvio_mean"), "skipped": sum(r["skipped"] for r in rows)}
print(json.dumps(summary))
PY
