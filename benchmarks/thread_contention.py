"""Decode tokens/s idle vs beside busy processes, with torch's default thread count, the thread
rule (model/threads.py) and one thread, measured in one run.

    python benchmarks/thread_contention.py [--hidden 64] [--new-tokens 64] [--repeat 3]

Neighbours: "idle" (none), "busy2" (two busy-loop processes), "verifiers" (a VerifierPool of two
worker processes verifying math answers nonstop, as eval and filter run beside a generator).
Thread settings: "default" (torch's own count at start: the cores it sees), "rule"
(thread_rule for this model's decode step, decided under that load), "one". The decode is a
64-token greedy generate of a fresh model (size by --hidden), timed round-robin per setting.
Target (issue 10): under two busy loops, the rule's tokens/s within 3x of idle.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit  # noqa: E402

from model import ModelConfig, Transformer  # noqa: E402
from model.engine import Engine  # noqa: E402
from model.threads import thread_rule  # noqa: E402

DEFAULT_THREADS = torch.get_num_threads()


def _spin():
    while True:
        pass


class Verifying:
    """Two VerifierPool workers kept busy from a background thread."""

    def __init__(self):
        from verifiers import VerifierPool

        self.pool = VerifierPool(2, 10.0, progress=False)
        self.pool.__enter__()
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        answers = [f"The answer is \\boxed{{\\frac{{{i}}}{{{i + 1}}}}}" for i in range(64)]
        golds = [f"{i}/{i + 1}" for i in range(64)]
        while not self.stop:
            self.pool.map("math", answers, golds)

    def close(self):
        self.stop = True
        self.thread.join()
        self.pool.__exit__(None, None, None)


def neighbours(kind: str):
    if kind == "idle":
        return None
    if kind == "busy2":
        procs = [mp.Process(target=_spin, daemon=True) for _ in range(2)]
        for p in procs:
            p.start()
        return procs
    return Verifying()


def stop(handle) -> None:
    if handle is None:
        return
    if isinstance(handle, list):
        for p in handle:
            p.kill()
            p.join()
    else:
        handle.close()


def decode_rate(engine, prompt, new_tokens) -> float:
    result = engine.generate([prompt], max_new_tokens=new_tokens, temperature=0.0,
                             eos_token_ids=())
    return result.num_generated / result.elapsed_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scenarios", default="idle,busy2,verifiers")
    args = ap.parse_args()
    h = args.hidden
    config = ModelConfig(vocab_size=272, hidden_size=h, intermediate_size=3 * h // 2,
                         moe_intermediate_size=h // 2, num_hidden_layers=args.layers,
                         first_k_dense_replace=1, num_attention_heads=max(2, h // 32),
                         num_key_value_heads=max(2, h // 32), q_lora_rank=h // 2,
                         kv_lora_rank=h // 2, qk_nope_head_dim=16, qk_rope_head_dim=8,
                         v_head_dim=16, n_routed_experts=8, n_group=2, topk_group=1,
                         num_experts_per_tok=2, max_position_embeddings=512)
    torch.manual_seed(0)
    engine = Engine(Transformer(config).eval(), threads=None)
    prompt = list(range(1, 17))
    decode_rate(engine, prompt, 8)  # warm up
    results = {}
    for scenario in args.scenarios.split(","):
        handle = neighbours(scenario)
        try:
            time.sleep(1.0)  # let the neighbours get going
            from model import threads as rule_module

            rule_module._cache.clear()
            active = sum(p.numel() for p in engine.model.parameters())
            rule = thread_rule(2.0 * active)
            settings = {"default": DEFAULT_THREADS, "rule": rule.threads, "one": 1}
            rates = {name: [] for name in settings}
            for _ in range(args.repeat):
                for name, n in settings.items():
                    torch.set_num_threads(n)
                    rates[name].append(decode_rate(engine, prompt, args.new_tokens))
            results[scenario] = {name: {"threads": settings[name],
                                        "tokens_per_s": statistics.median(r)}
                                 for name, r in rates.items()}
            results[scenario]["rule_reason"] = rule.reason
        finally:
            stop(handle)
        print(scenario, results[scenario], flush=True)
    summary = {}
    for scenario in results:
        if scenario == "idle":
            continue
        for name in ("default", "rule", "one"):
            summary[f"{scenario}_vs_idle_{name}"] = (
                results["idle"][name]["tokens_per_s"] / results[scenario][name]["tokens_per_s"]
                if "idle" in results else None)
    emit({"benchmark": "thread_contention", "hidden": h, "new_tokens": args.new_tokens,
          "default_threads": DEFAULT_THREADS, "results": results,
          "slowdown_x": summary})


if __name__ == "__main__":
    main()
