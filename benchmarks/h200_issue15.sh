#!/usr/bin/env bash
# Issue 15, one prepared H200 run (budget < 10 minutes: timeouts sum to 580 s; each part has its own timeout and prints
# one JSON line; a failing part does not stop the others). From the repository root:
#
#   OUT=$OUT bash benchmarks/h200_issue15.sh            # on the H200
#   bash benchmarks/h200_issue15.sh --cpu-smoke         # every part at tiny size on CPU (typos)
#   PARTS="gpu_tests fp8_h200" bash benchmarks/h200_issue15.sh   # a subset (e.g. to split the run
#                                                                # over two 10-minute commands)
#
# Parts, in order:
#   1. pytest -m gpu: FP8 scaled_mm vs emulation, CUDA-graph decode tokens == eager tokens
#   2. benchmarks/fp8_h200.py: blockwise scaled_mm agreement, FP8 vs bf16 linear, 0.74B FP8 training
#   3. benchmarks/pretrain_variants.py: the real pretrain loop on the 0.74B MoE with MTP,
#      eager vs per-layer vs whole-model compile: MFU per variant + top kernels; the last variant
#      trains on and saves a checkpoint
#   4. benchmarks/decode.py on that checkpoint: tokens/s at batch 1/16/64 with and without CUDA
#      graphs and with MTP speculation vs transformers generate, HBM roofline share at batch 1,
#      MTP acceptance on corpus prompts (random 0.74B weights if no checkpoint was written)
set -uo pipefail
OUT=${OUT:-runs/issue15-out}
mkdir -p "$OUT" runs
export PYTHONPATH=${PYTHONPATH:-.}
PY=${PY:-python}
SMOKE=0
[[ "${1:-}" == "--cpu-smoke" ]] && SMOKE=1

# Sizes. The smoke run shrinks the model with --set overrides and uses the aot_eager backend.
if [[ $SMOKE == 1 ]]; then
  DOCS=300; STEPS=4; FINAL=6; SKIP=1; DEC_BATCHES=1,2; NEW=8; DEV=cpu; DTYPE=float32
  TINY=(--set train.batch_size=2 --set train.seq_len=64 --set train.precision=bf16
        --set model.hidden_size=64 --set model.num_hidden_layers=2 --set model.intermediate_size=128
        --set model.moe_intermediate_size=32 --set model.n_routed_experts=8
        --set model.num_attention_heads=2 --set model.q_lora_rank=32 --set model.kv_lora_rank=32
        --set model.qk_nope_head_dim=16 --set model.qk_rope_head_dim=8 --set model.v_head_dim=16
        --set model.vocab_size=272 --set model.num_experts_per_tok=2 --set optim.warmup_steps=1
        --backend aot_eager)
  DECODE_CONFIG=recipes/model/tiny.yaml
else
  DOCS=60000; STEPS=${STEPS:-25}; FINAL=${FINAL:-120}; SKIP=5; DEC_BATCHES=1,16,64; NEW=64
  DEV=cuda; DTYPE=bfloat16; TINY=()
  DECODE_CONFIG=recipes/model/moe_0p7b.yaml
fi

PARTS=${PARTS:-gpu_tests fp8_h200 corpus pretrain_variants decode}

part() {  # part NAME TIMEOUT_S CMD...: run, keep the log, echo its last JSON line (or a failure line)
  local name=$1 limit=$2; shift 2
  [[ " $PARTS " == *" $name "* ]] || return 0
  local log="$OUT/$name.log" t0=$SECONDS
  if declare -F "$1" >/dev/null; then  # a function of this script: run it in a child bash
    timeout "$limit" bash -c "$1" >"$log" 2>&1
  else
    timeout "$limit" "$@" >"$log" 2>&1
  fi
  local rc=$?
  local json
  json=$(grep '^{' "$log" | tail -1)
  if [[ $rc -ne 0 || -z "$json" ]]; then
    json="{\"part\": \"$name\", \"rc\": $rc, \"tail\": $(tail -5 "$log" | $PY -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}"
  fi
  echo "$json" | tee "$OUT/$name.json"
  echo "# $name: rc=$rc in $((SECONDS - t0)) s (log $log)" >&2
}

gpu_tests() {
  $PY -m pytest -m gpu tests/model/test_fp8_gpu.py tests/model/test_decode_graph.py -rA -p no:cacheprovider \
      --junitxml="$OUT/gpu_tests.xml"
  local rc=$?
  $PY - "$OUT/gpu_tests.xml" "$rc" <<'PY'
import json, sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite[0]
print(json.dumps({"part": "gpu_tests", "rc": int(sys.argv[2]),
                  **{k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}}))
PY
  return $rc
}

corpus() {
  rm -rf runs/h200-shards &&  # shards remember their corpus: a rewritten corpus needs new ones
  $PY -m pretrain.synthetic --out runs/h200-corpus.jsonl --docs $DOCS &&
  $PY -c "from pretrain.tokenizer import build_byte_tokenizer, save_tokenizer; save_tokenizer(build_byte_tokenizer(), 'runs/h200-tokenizer')" &&
  echo '{"part": "corpus", "rc": 0}'
}

decode() {
  local ckpt=runs/issue15-model/final
  if [[ -d $ckpt ]]; then
    $PY benchmarks/decode.py --checkpoint $ckpt --prompts-from runs/h200-corpus.jsonl \
        --device $DEV --dtype $DTYPE --cuda-graphs --batches $DEC_BATCHES --prompt-len 64 \
        --new-tokens $NEW --repeat 1
  else
    $PY benchmarks/decode.py --config $DECODE_CONFIG --device $DEV --dtype $DTYPE --cuda-graphs \
        --batches $DEC_BATCHES --prompt-len 64 --new-tokens $NEW --repeat 1
  fi
}

export OUT PY DOCS DEV DTYPE DEC_BATCHES NEW DECODE_CONFIG
export -f gpu_tests corpus decode
part gpu_tests 90 gpu_tests
if [[ $SMOKE == 1 ]]; then
  part fp8_h200 30 $PY -c "import py_compile, json; py_compile.compile('benchmarks/fp8_h200.py', doraise=True); print(json.dumps({'part': 'fp8_h200', 'smoke': 'compiled only (needs CUDA)'}))"
else
  part fp8_h200 120 $PY benchmarks/fp8_h200.py --steps 40 --out "$OUT/fp8_h200_full.json"
fi
part corpus 40 corpus
[[ " $PARTS " == *" pretrain_variants "* ]] && rm -rf runs/issue15-eager runs/issue15-layer runs/issue15-model
part pretrain_variants 240 $PY benchmarks/pretrain_variants.py --config recipes/pretrain/h200_moe_0p7b.yaml \
    --variants eager,layer,model --steps $STEPS --final-steps $FINAL --skip $SKIP "${TINY[@]}"
part decode 90 decode
[[ -f runs/issue15-model/metrics.jsonl ]] && cp runs/issue15-model/metrics.jsonl "$OUT/pretrain_model_metrics.jsonl"
echo "# all parts done; JSON lines in $OUT/*.json" >&2
