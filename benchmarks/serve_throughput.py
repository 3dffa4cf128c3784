"""`distillery serve` driven by the `openai` backend: requests/s and tokens/s at concurrency
1/4/16, the client's CPU per request, and the server's batching gain (--max-batch 16 vs 1).

    python benchmarks/serve_throughput.py [--model DIR] [--requests 32] [--max-tokens 64]
        [--concurrency 1,4,16]

Without --model a fresh random checkpoint (benchmarks/generate_backends.make_checkpoint,
--hidden/--layers) is written to a temporary directory. Two servers run as subprocesses, one
batching up to 16 sequences and one decoding one request at a time; for each concurrency the
same requests (same seeds) go to each server alternately. Client CPU per request is the client
process's CPU time (time.process_time) over the requests: far below the wall time per request
means the client is not the bottleneck.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit  # noqa: E402

from evals.config import SamplingParams  # noqa: E402
from evals.openai_client import OpenAIGenerator  # noqa: E402
from tests.distill.servers import ServeProcess  # noqa: E402


def drive(url: str, concurrency: int, requests: int, max_tokens: int) -> dict:
    gen = OpenAIGenerator("model", url, api_key_env=None, concurrency=concurrency,
                          on_error="raise", timeout_s=600)
    prompts = [[{"role": "user", "content": f"Count to {i}."}] for i in range(requests)]
    sampling = SamplingParams(temperature=0.6, top_p=0.95, max_new_tokens=max_tokens)
    cpu, wall = time.process_time(), time.perf_counter()
    tokens = 0
    for _, sample in gen.iter_generate(prompts, list(range(requests)), sampling):
        tokens += sample.completion_tokens
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    gen.close()
    return {"requests_per_s": requests / wall, "tokens_per_s": tokens / wall,
            "wall_per_request_ms": 1000 * wall / requests,
            "client_cpu_per_request_ms": 1000 * cpu / requests}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--concurrency", default="1,4,16")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from generate_backends import make_checkpoint

            model = os.path.join(tmp, "model")
            make_checkpoint(model, args.hidden, args.layers)
        servers = {"batched": ServeProcess(model, "--name", "model", "--max-batch", "16",
                                           "--max-queue", "256"),
                   "one_at_a_time": ServeProcess(model, "--name", "model", "--max-batch", "1",
                                                 "--max-queue", "256")}
        try:
            for server in servers.values():  # warm up
                drive(server.url, 2, 2, 4)
            results = {}
            for c in (int(x) for x in args.concurrency.split(",")):
                for name, server in servers.items():
                    results[f"{name}_c{c}"] = drive(server.url, c, args.requests, args.max_tokens)
                    print(name, c, results[f"{name}_c{c}"], flush=True)
        finally:
            for server in servers.values():
                server.stop()
    top = max(int(x) for x in args.concurrency.split(","))
    emit({"benchmark": "serve_throughput", "requests": args.requests,
          "max_tokens": args.max_tokens, "results": results,
          "batching_gain_tokens_per_s": results[f"batched_c{top}"]["tokens_per_s"]
          / results[f"one_at_a_time_c{top}"]["tokens_per_s"]})


if __name__ == "__main__":
    main()
