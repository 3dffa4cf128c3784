"""Batched generation over a static MLA latent cache, with optional MTP self-speculation.

The gpt-fast / nanochat engine shape: one preallocated `LatentCache` (main layers + MTP layers),
a prefill that runs every prompt through the absorbed MLA path at once, then decode steps where
each sequence sits at its own position. Shapes: B batch, T step length, S keys, D hidden, V vocab.

Batching with per-sequence lengths: prompts are right-padded and prefilled at positions 0..T-1.
Queries at padded positions write garbage into slots >= the prompt length, but a slot is always
rewritten (by the step that feeds that position) before any valid query can see it, because a
query at position p only attends to keys s <= p. Finished sequences are dropped from the batch
(`LatentCache.reorder`), so a long tail does not pay for the whole batch.

MTP self-speculative decoding (spec §4.3, use_mtp=True): the first MTP module drafts token n+1,
and the main model verifies [t_n, draft] at positions [n, n+1] in one forward. The draft is kept
by the rejection rule of `model.sampling.speculative_accept` (greedy: iff it equals the argmax),
and position n+1's logits then give a bonus token, so a sequence advances by 1 or 2 tokens per
step and the output distribution equals plain decoding's. The MTP layer keeps its own cache
layer (index num_hidden_layers): each step it runs at [n, n+1] on (h_n, Emb(t_{n+1})) and
(h_{n+1}, Emb(t_{n+2})), and the next draft comes from index 1 if the draft was accepted, else
from index 0 (slot n+1 then holds garbage that the next step overwrites).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import torch

from model.cache import LatentCache
from model.sampling import (RowGenerators, check_sampling_args, logits_to_probs, sample,
                            sample_from_logits, speculative_accept)


@dataclass
class GenerationResult:
    """Per-sequence fields are lists in prompt order. `tokens` are the new tokens only; they
    include the EOS token, or the token that completed a stop string, when one ended the sequence.
    `text` (tokenizer given) is the decoded new text without special tokens, cut right after the
    stop string where one matched."""

    tokens: list[list[int]]
    finish_reason: list[str]  # "stop" (EOS or stop string) or "length"
    num_prompt_tokens: list[int]
    text: list[str] | None
    num_generated: int
    elapsed_s: float  # the whole call: prefill + decode
    tokens_per_s: float  # num_generated / elapsed_s
    prefill_s: float  # prefill, first sample and (MTP) the first draft
    num_steps: int  # decode forwards after the prefill
    draft_tokens: int = 0  # MTP drafts verified
    accepted_tokens: int = 0
    acceptance_rate: float | None = None  # accepted / drafted; None without MTP


class _StopWatcher:
    """Incremental detokenizer that spots stop strings (vLLM's prefix/read offsets, so tokens
    whose text depends on their neighbours, and partial UTF-8 characters, decode correctly)."""

    def __init__(self, tokenizer, stop_strings):
        self.tokenizer, self.stop_strings = tokenizer, stop_strings
        self.longest = max(len(s) for s in stop_strings)
        self.ids: list[int] = []
        self.text = ""
        self.prefix = self.read = 0  # ids[:read] are in `text`; ids[prefix:read] give context

    def _decode(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token: int) -> bool:
        """Add a token; True when the text now contains a stop string (text is cut after it)."""
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return False  # no new characters yet (special token, or a partial UTF-8 character)
        start = max(0, len(self.text) - self.longest + 1)
        self.text += after[len(before):]
        self.prefix, self.read = self.read, len(self.ids)
        ends = [i + len(s) for s in self.stop_strings if (i := self.text.find(s, start)) >= 0]
        if ends:
            self.text = self.text[:min(ends)]
        return bool(ends)


class _Sequence:
    """Host-side bookkeeping for one sequence: emitted tokens, finish reason, stop strings."""

    def __init__(self, num_prompt_tokens, limit, eos_ids, watcher, index=0, on_tokens=None):
        self.num_prompt_tokens, self.limit, self.eos_ids = num_prompt_tokens, limit, eos_ids
        self.watcher, self.index, self.on_tokens = watcher, index, on_tokens
        self.tokens: list[int] = []
        self.finish_reason = None if limit > 0 else "length"
        self.stop_text = None  # the text cut after the stop string that ended the sequence

    def push(self, token: int) -> bool:
        """Emit one token; returns True once the sequence has finished."""
        self.tokens.append(token)
        if token in self.eos_ids:
            self.finish_reason = "stop"
        elif self.watcher is not None and self.watcher.push(token):
            self.finish_reason, self.stop_text = "stop", self.watcher.text
        elif len(self.tokens) >= self.limit:
            self.finish_reason = "length"
        if self.on_tokens is not None:
            self.on_tokens(self.index, [token], self.finish_reason)
        return self.finish_reason is not None

    def text(self, tokenizer) -> str:
        if self.stop_text is not None:
            return self.stop_text
        return tokenizer.decode(self.tokens, skip_special_tokens=True)


@dataclass
class _Batch:
    """The rows being decoded: sequence indices, positions (host and device), the sampling state
    ([last] or, with MTP, [last, draft, q]), their cache and generator, all in row order."""

    rows: list[int]
    pos: list[int]
    pos_dev: torch.Tensor
    state: list[torch.Tensor]
    cache: LatentCache
    generator: object  # torch.Generator or RowGenerators

    def keep(self, keep: list[int]) -> None:
        """Keep (and order) these rows; no-op when all stay."""
        if keep == list(range(len(self.rows))):
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.pos_dev.device)
        self.cache.reorder(index)
        self.state, self.pos_dev = [t[index] for t in self.state], self.pos_dev[index]
        if isinstance(self.generator, RowGenerators):
            self.generator = self.generator.select(keep)
        self.rows, self.pos = [self.rows[r] for r in keep], [self.pos[r] for r in keep]

    def extend(self, other: "_Batch") -> None:
        """Append another batch's rows (admitted between steps; both have per-row generators)."""
        self.cache.extend(other.cache)
        self.state = [torch.cat((a, b)) for a, b in zip(self.state, other.state)]
        self.pos_dev = torch.cat((self.pos_dev, other.pos_dev))
        self.generator = RowGenerators(self.generator.generators + other.generator.generators)
        self.rows, self.pos = self.rows + other.rows, self.pos + other.pos


class Engine:
    """threads: "auto" applies `model.threads.apply_thread_rule` once (CPU only) for this model's
    decode work at `batch_size` rows per step (2 x active parameters x rows FLOPs); an int sets
    it; None leaves torch's setting alone.

    cuda_graphs: run plain (non-MTP) decode steps at static shapes, replayed as CUDA graphs on
    a GPU (model/decode_graph.py); on CPU the static-shape step runs eagerly. Off by default."""

    def __init__(self, model, tokenizer=None, threads: int | str | None = "auto",
                 cuda_graphs: bool = False, batch_size: int = 1):
        from model.decode_graph import GraphedDecodeStep

        self.model, self.tokenizer = model, tokenizer
        self.config = model.config
        self.graphed = GraphedDecodeStep(self) if cuda_graphs else None
        self.thread_choice = None  # the ThreadChoice made by "auto" (for the commands to show)
        if threads is not None and self.device.type == "cpu":
            self._set_threads(threads, batch_size)

    def _set_threads(self, threads: int | str, batch_size: int = 1) -> None:
        from model.threads import apply_thread_rule

        if threads == "auto":
            from model.accounting import account

            active = account(self.config).active_params  # top-k routed experts, no MTP
            self.thread_choice = apply_thread_rule(2.0 * active * max(1, batch_size),
                                                   where="engine decode")
        elif isinstance(threads, int) and threads >= 1:
            torch.set_num_threads(threads)
        else:
            raise ValueError(f"threads must be 'auto', a positive int or None, got {threads!r}")

    @property
    def device(self):
        return self.model.lm_head.weight.device

    def new_cache(self, batch_size: int, max_len: int) -> LatentCache:
        """One cache layer per main layer and per MTP module (MTP k at num_hidden_layers + k-1)."""
        c = self.config
        return LatentCache(len(self.model.model.layers), batch_size, max_len, c.kv_lora_rank,
                           c.qk_rope_head_dim, self.model.lm_head.weight.dtype, self.device)

    # -- forwards (absorbed MLA over the latent cache) ---------------------------------------
    def _run(self, layers, x_BTD, cache, positions_BT, length):
        """Run `layers` at per-row positions; key s is visible to the query at p iff s <= p."""
        cos, sin = self.model.model.rotary_emb(positions_BT)
        keys_S = torch.arange(length, device=x_BTD.device)
        absorbed = (cache, positions_BT, keys_S <= positions_BT[..., None])
        for layer in layers:
            x_BTD = layer(x_BTD, cos, sin, absorbed=absorbed)
        return x_BTD

    def logits(self, hidden_BTD: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(self.model.model.norm(hidden_BTD))

    def forward(self, cache, ids_BT, positions_BT, length):
        """Main model: (logits (B,T,V), hidden (B,T,D) before the final norm, the MTP input)."""
        x = self.model.model.embed_tokens(ids_BT)
        hidden = self._run(self.model.main_layers, x, cache, positions_BT, length)
        return self.logits(hidden), hidden

    def prefill(self, cache, ids_BT, lengths_B):
        """All prompts (right-padded to T) at positions 0..T-1 in one forward.
        Returns (logits at each row's last prompt token (B,V), hidden (B,T,D))."""
        B, T = ids_BT.shape
        positions = torch.arange(T, device=ids_BT.device).expand(B, T)
        x = self.model.model.embed_tokens(ids_BT)
        hidden = self._run(self.model.main_layers, x, cache, positions, T)
        last = hidden[torch.arange(B, device=hidden.device), lengths_B - 1]
        return self.logits(last), hidden

    def decode_step(self, cache, ids_BT, positions_BT, length):
        """One decode forward of T new tokens per row (T=1 plain, T=2 MTP verification);
        `length` = max position + 1 (passed in so the step needs no host sync)."""
        return self.forward(cache, ids_BT, positions_BT, length)

    def mtp_step(self, cache, hidden_BTD, next_ids_BT, positions_BT, length):
        """First MTP module (spec §4.1): at position i, (h_i, Emb(t_{i+1})) -> t_{i+2} logits."""
        layer = self.model.mtp_layers[0]
        x = layer.combine(self.model.model.embed_tokens(next_ids_BT), hidden_BTD)
        h = self._run([layer], x, cache, positions_BT, length)
        return self.model.lm_head(layer.shared_head.norm(h))

    # -- generation --------------------------------------------------------------------------
    def _check_prompts(self, prompts):
        context, vocab = self.config.max_position_embeddings, self.config.vocab_size
        if not prompts:
            raise ValueError("generate: no prompts given")
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise ValueError(f"generate: prompt {i} is empty")
            if len(p) > context:
                raise ValueError(f"generate: prompt {i} has {len(p)} tokens, more than the "
                                 f"context max_position_embeddings={context}; truncate it yourself")
            if min(p) < 0 or max(p) >= vocab:
                raise ValueError(f"generate: prompt {i} has token ids outside [0, {vocab})")

    def _default_eos(self):
        source = self.tokenizer if self.tokenizer is not None else self.config
        eos = getattr(source, "eos_token_id", None)
        return () if eos is None else (eos,) if isinstance(eos, int) else tuple(eos)

    def generate(self, prompts: list[list[int]], max_new_tokens: int | list[int] = 256,
                 temperature: float = 0.6, top_p: float = 1.0, top_k: int = 0,
                 eos_token_ids=None, stop_strings=(), seed: int | list[int] | None = None,
                 use_mtp: bool = False, row_stop_strings: list | None = None,
                 on_tokens=None, admit=None) -> GenerationResult:
        """Generate for every prompt. eos_token_ids None = the tokenizer's (else the config's)
        EOS; () = none. Sequences stop at EOS, a stop string, max_new_tokens, or the context.

        Per-row options (a server batching unrelated requests): `max_new_tokens` and `seed` may be
        lists with one value per prompt (a seed list gives each row its own generator, so a row
        draws what it would draw alone); `row_stop_strings` is a list of stop-string tuples per
        prompt (added to `stop_strings`). `on_tokens(i, new_tokens, finish_reason)` is called
        from this thread as prompt i's tokens are emitted (finish_reason None until the last).
        `admit(active_rows)`, called before every decode step, may return new rows to join the
        batch, as (prompt ids, max_new_tokens, seed, stop strings) tuples; they are numbered
        after the prompts (in on_tokens and in the result) and need `seed` to be a list."""
        check_sampling_args(temperature, top_k, top_p)
        stop_strings = (stop_strings,) if isinstance(stop_strings, str) else tuple(stop_strings)
        self._check_prompts(prompts)
        limits = self._per_row(max_new_tokens, len(prompts), "max_new_tokens")
        stops = [stop_strings + tuple(r) for r in
                 self._per_row(row_stop_strings, len(prompts), "row_stop_strings", ())]
        if any(m < 0 for m in limits):
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if any(stops) and self.tokenizer is None:
            raise ValueError("stop_strings need the Engine to have a tokenizer")
        if any(not s for row in stops for s in row):
            raise ValueError("stop_strings must be non-empty strings")
        if use_mtp and len(self.model.mtp_layers) == 0:
            raise ValueError("use_mtp=True needs a model with MTP modules "
                             "(num_nextn_predict_layers > 0)")
        eos = frozenset(self._default_eos() if eos_token_ids is None else eos_token_ids)
        context = self.config.max_position_embeddings
        if any(len(p) + m > context for p, m in zip(prompts, limits)):
            warnings.warn(f"generate: max_new_tokens={max_new_tokens} runs past the context "
                          f"({context}); those sequences stop there with finish_reason 'length'",
                          stacklevel=2)
        seqs = [_Sequence(len(p), min(m, context - len(p)), eos,
                          _StopWatcher(self.tokenizer, stop) if stop else None, i, on_tokens)
                for i, (p, m, stop) in enumerate(zip(prompts, limits, stops))]
        if isinstance(seed, (list, tuple)):
            if len(seed) != len(prompts):
                raise ValueError(f"seed: {len(seed)} seeds for {len(prompts)} prompts")
            generator = RowGenerators.seeded(list(seed), self.device)
        else:
            generator = torch.Generator(device=self.device)
            if seed is not None:
                generator.manual_seed(seed)
            else:
                generator.seed()
        sampling = (temperature, top_k, top_p, generator)
        pull = None
        if admit is not None:
            if not isinstance(generator, RowGenerators):
                raise ValueError("admit needs per-row seeds (seed=[...])")

            def pull(active):
                rows = []
                for ids, limit, row_seed, stop in admit(active) or ():
                    self._check_prompts([ids])
                    watcher = _StopWatcher(self.tokenizer, tuple(stop)) if stop else None
                    rows.append((list(ids), _Sequence(len(ids), min(limit, context - len(ids)),
                                                      eos, watcher, 0, on_tokens), int(row_seed)))
                return rows

        was_training = self.model.training
        self.model.eval()  # routers count expert loads in training mode (aux-free bias update)
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                stats = self._decode_loop(prompts, seqs, sampling, use_mtp, pull)
        finally:
            self.model.train(was_training)
        elapsed = time.perf_counter() - start
        return self._result(seqs, elapsed, use_mtp, *stats)

    @staticmethod
    def _per_row(value, n: int, name: str, default=None) -> list:
        if value is None:
            return [default] * n
        if name == "row_stop_strings" or isinstance(value, (list, tuple)):
            if len(value) != n:
                raise ValueError(f"{name}: {len(value)} values for {n} prompts")
            return list(value)
        return [value] * n

    def _result(self, seqs, elapsed, use_mtp, prefill_s, num_steps, drafted, accepted):
        texts = None
        if self.tokenizer is not None:
            texts = [s.text(self.tokenizer) for s in seqs]
        num_generated = sum(len(s.tokens) for s in seqs)
        return GenerationResult(
            tokens=[s.tokens for s in seqs], finish_reason=[s.finish_reason for s in seqs],
            num_prompt_tokens=[s.num_prompt_tokens for s in seqs], text=texts,
            num_generated=num_generated, elapsed_s=elapsed,
            tokens_per_s=num_generated / elapsed if elapsed > 0 else 0.0, prefill_s=prefill_s,
            num_steps=num_steps, draft_tokens=drafted, accepted_tokens=accepted,
            acceptance_rate=(accepted / drafted if drafted else 0.0) if use_mtp else None)

    def _start(self, prompts, seqs, first, sampling, use_mtp) -> tuple["_Batch", float]:
        """Prefill `prompts` (sequences seqs[first:first + len(prompts)]) into a new cache, draw
        their first tokens (and MTP drafts); returns the rows still running and the prefill time."""
        temperature, top_k, top_p, generator = sampling
        device, B = self.device, len(prompts)
        T = max(len(p) for p in prompts)
        max_len = max(seqs[first + i].num_prompt_tokens + seqs[first + i].limit
                      for i in range(B)) + 2  # +2: MTP writes at n+1
        cache = self.new_cache(B, max_len)
        ids = torch.zeros(B, T, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, :len(p)] = torch.tensor(p)
        ids = ids.to(device)
        lengths = torch.tensor([len(p) for p in prompts], device=device)

        t0 = time.perf_counter()
        logits, hidden = self.prefill(cache, ids, lengths)
        last = sample_from_logits(logits, temperature, top_k, top_p, generator)  # at position len
        draft = q = None
        if use_mtp:  # fill the MTP cache for the prompt; its last position drafts len + 1
            shifted = torch.roll(ids, -1, dims=1).scatter(1, lengths[:, None] - 1, last[:, None])
            positions = torch.arange(T, device=device).expand(B, T)
            mtp_logits = self.mtp_step(cache, hidden, shifted, positions, T)
            draft_logits = mtp_logits[torch.arange(B, device=device), lengths - 1]
            q = logits_to_probs(draft_logits, temperature, top_k, top_p)
            draft = sample(q, generator)
        tokens = last.tolist()
        prefill_s = time.perf_counter() - t0
        state = [t for t in (last, draft, q) if t is not None]
        batch = _Batch(list(range(first, first + B)), [len(p) for p in prompts],
                       lengths.clone(), state, cache, generator)
        batch.keep([i for i in range(B) if seqs[first + i].finish_reason is None
                    and not seqs[first + i].push(tokens[i])])
        return batch, prefill_s

    def _decode_loop(self, prompts, seqs, sampling, use_mtp, admit=None):
        """Prefill, then decode until every sequence has finished. Host state in `_Batch`: rows
        (sequence index of each batch row) and pos (position of each row's last, not yet fed,
        token); one `.tolist()` per step brings the new tokens back for EOS / stop-string
        checks. admit(active) -> [(prompt ids, _Sequence, seed)] adds rows between steps."""
        temperature, top_k, top_p, _ = sampling
        batch, prefill_s = self._start(prompts, seqs, 0, sampling, use_mtp)
        num_steps = drafted = accepted = 0
        while True:
            new = admit(len(batch.rows)) if admit is not None else None
            if new:
                for k, (_, seq, _) in enumerate(new):
                    seq.index = len(seqs) + k
                seqs += [seq for _, seq, _ in new]
                gens = RowGenerators.seeded([seed for _, _, seed in new], self.device)
                more, _ = self._start([ids for ids, _, _ in new], seqs, len(seqs) - len(new),
                                      (temperature, top_k, top_p, gens), use_mtp)
                batch.extend(more)
            if not batch.rows:
                break
            num_steps += 1
            length = max(batch.pos) + (2 if use_mtp else 1)
            row_sampling = (temperature, top_k, top_p, batch.generator)
            if use_mtp:
                batch.state, step_tokens, advance = self._speculative_step(
                    batch.cache, batch.state, batch.pos_dev, length, row_sampling)
                drafted += len(batch.rows)
            else:
                ids, positions = batch.state[0][:, None], batch.pos_dev[:, None]
                logits = (self.graphed(batch.cache, ids, positions) if self.graphed is not None
                          else self.decode_step(batch.cache, ids, positions, length)[0])
                batch.state = [sample_from_logits(logits[:, 0], *row_sampling)]
                step_tokens, advance = batch.state[0][:, None], torch.ones_like(batch.pos_dev)
            host = torch.cat((step_tokens, advance[:, None]), dim=1).tolist()
            batch.pos_dev = batch.pos_dev + advance
            keep = []
            for r, (*new_tokens, step) in enumerate(host):
                accepted += step - 1
                batch.pos[r] += step
                seq = seqs[batch.rows[r]]
                if not any(seq.push(t) for t in new_tokens[:step]):
                    keep.append(r)
            if len(keep) < len(batch.rows):  # drop finished rows from the batch and the cache
                batch.keep(keep)
        return prefill_s, num_steps, drafted, accepted

    def _speculative_step(self, cache, state, pos_B, length, sampling):
        """Verify each row's draft at [n, n+1], take the bonus token, and draft again.
        Returns (new state [last, draft, q], tokens (B, 2), tokens gained (B,) in {1, 2})."""
        temperature, top_k, top_p, generator = sampling
        last, draft, q = state
        positions = pos_B[:, None] + torch.arange(2, device=pos_B.device)
        logits, hidden = self.decode_step(cache, torch.stack((last, draft), dim=1), positions,
                                          length)
        p = logits_to_probs(logits[:, 0], temperature, top_k, top_p)
        ok, token = speculative_accept(p, q, draft, generator)
        bonus = sample_from_logits(logits[:, 1], temperature, top_k, top_p, generator)
        # Where the draft was rejected, `bonus` is garbage: MTP index 1 and slot n+1 go unused.
        mtp_logits = self.mtp_step(cache, hidden, torch.stack((token, bonus), dim=1), positions,
                                   length)
        draft_logits = torch.where(ok[:, None], mtp_logits[:, 1], mtp_logits[:, 0])
        q = logits_to_probs(draft_logits, temperature, top_k, top_p)
        new_draft = sample(q, generator)
        new_last = torch.where(ok, bonus, token)
        return [new_last, new_draft, q], torch.stack((token, bonus), dim=1), 1 + ok.long()
