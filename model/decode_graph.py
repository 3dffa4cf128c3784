"""The engine's plain decode step (one token per row) at static shapes, replayed as a CUDA graph.

Decode at small batch is launch-bound: a step of the 0.74B MoE is hundreds of small kernels.
gpt-fast's remedy: make the step's shapes static and capture it once as a CUDA graph, then each
step only copies its inputs into the captured buffers and replays.

Static shapes: the step attends over the whole preallocated cache (`cache.max_len` keys) instead
of the first max(position)+1; keys past a row's position are masked (-inf, weight exactly 0), so
the step computes the same attention (up to summation order) and greedy decoding gives the same
tokens. Nothing in the step syncs with the host (MoE counts are a fixed-size scatter-add, routing
offsets stay on the device), which graph capture requires.

A graph holds the addresses of the cache it was captured on: when the batch changes (rows finish
and the cache is compacted, rows are admitted) it is captured again for the new cache. On CPU
there is nothing to capture; the static-shape step runs eagerly (what the tests check).
"""

from __future__ import annotations

import torch


class GraphedDecodeStep:
    """`step(cache, ids_B1, positions_B1) -> logits (B, 1, V)` for an `Engine`. The returned
    logits are the graph's output buffer: consume them before the next call."""

    def __init__(self, engine, warmup: int = 2):
        self.engine, self.warmup = engine, warmup
        self.key = None
        self.graph = self.ids = self.positions = self.logits = None
        self.captures = 0  # how many graphs were captured (one per batch shape / cache)

    def static_step(self, cache, ids_B1, positions_B1):
        logits, _ = self.engine.forward(cache, ids_B1, positions_B1, cache.max_len)
        return logits

    def __call__(self, cache, ids_B1, positions_B1):
        if ids_B1.device.type != "cuda":
            return self.static_step(cache, ids_B1, positions_B1)
        key = (cache.latent.data_ptr(), cache.rope_key.data_ptr(), tuple(ids_B1.shape),
               cache.max_len)
        if key != self.key:
            self._capture(cache, ids_B1, positions_B1)
            self.key = key
        self.ids.copy_(ids_B1)
        self.positions.copy_(positions_B1)
        self.graph.replay()
        return self.logits

    def _capture(self, cache, ids_B1, positions_B1):
        """Warm up on a side stream (the warmup steps write the same entries the replay will),
        then capture one step reading from the static input buffers."""
        self.graph = None  # free the previous graph's memory pool first
        self.ids, self.positions = ids_B1.clone(), positions_B1.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                self.static_step(cache, self.ids, self.positions)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.logits = self.static_step(cache, self.ids, self.positions)
        self.graph = graph
        self.captures += 1
