"""Token sampling for the engine: temperature, top-k, top-p, and the speculative rejection rule.

Everything stays on the device and draws from an explicit `torch.Generator`, so a seeded run is
reproducible and no step needs a host sync (gpt-fast's exponential-race sampling instead of
`torch.multinomial`). Shapes: B rows, V vocabulary.
"""

from __future__ import annotations

import torch


class RowGenerators:
    """One `torch.Generator` per batch row, so a row draws the same numbers whatever else is in
    its batch (a request's seed means the same alone or batched). `select` follows the engine
    when it drops finished rows."""

    def __init__(self, generators: list[torch.Generator]):
        self.generators = generators

    @classmethod
    def seeded(cls, seeds: list[int], device) -> "RowGenerators":
        return cls([torch.Generator(device=device).manual_seed(int(s)) for s in seeds])

    def select(self, rows: list[int]) -> "RowGenerators":
        return RowGenerators([self.generators[r] for r in rows])

    def exponential(self, like_BV: torch.Tensor) -> torch.Tensor:
        assert like_BV.shape[0] == len(self.generators), "one generator per row"
        return torch.stack([torch.empty_like(row).exponential_(1.0, generator=g)
                            for row, g in zip(like_BV, self.generators)])

    def uniform(self, like_B: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.rand((), generator=g, device=like_B.device, dtype=like_B.dtype)
                            for g in self.generators])


def check_sampling_args(temperature: float, top_k: int, top_p: float) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p}")


def filter_logits(logits_BV: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf every logit outside the top-k, then outside the nucleus of mass top_p.

    Top-k keeps ties with the k-th value. The nucleus is the smallest prefix of the tokens sorted
    by probability whose mass reaches top_p: a token stays iff the mass strictly before it is
    < top_p (the same set as transformers' TopPLogitsWarper), so the top token always stays.
    """
    if top_k > 0 and top_k < logits_BV.shape[-1]:
        kth = logits_BV.topk(top_k, dim=-1).values[..., -1:]
        logits_BV = logits_BV.masked_fill(logits_BV < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits_BV.sort(dim=-1, descending=True)
        probs = sorted_logits.float().softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits_BV = logits_BV.masked_fill(drop, float("-inf"))
    return logits_BV


def logits_to_probs(logits_BV: torch.Tensor, temperature: float, top_k: int = 0,
                    top_p: float = 1.0) -> torch.Tensor:
    """The sampling distribution (B, V) in fp32. temperature 0 gives the one-hot argmax, so
    greedy decoding is the deterministic special case of the same rules (also for speculation)."""
    if temperature == 0:
        return torch.nn.functional.one_hot(logits_BV.argmax(dim=-1), logits_BV.shape[-1]).float()
    logits = filter_logits(logits_BV.float() / temperature, top_k, top_p)
    return logits.softmax(dim=-1)


def sample(probs_BV: torch.Tensor, generator: torch.Generator | RowGenerators | None) -> torch.Tensor:
    """Draw one token per row: argmax(p / E) with E ~ Exp(1) i.i.d. picks token i with
    probability p_i (the exponential race), without a host sync. A zero-probability token never
    wins."""
    if isinstance(generator, RowGenerators):
        race = generator.exponential(probs_BV)
    else:
        race = torch.empty_like(probs_BV).exponential_(1.0, generator=generator)
    return (probs_BV / race).argmax(dim=-1)


def sample_from_logits(logits_BV, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits_BV.argmax(dim=-1)
    return sample(logits_to_probs(logits_BV, temperature, top_k, top_p), generator)


def speculative_accept(p_BV: torch.Tensor, q_BV: torch.Tensor, draft_B: torch.Tensor,
                       generator: torch.Generator | None):
    """Speculative sampling's rejection rule (Leviathan et al. 2023, Chen et al. 2023).

    The draft d was drawn from q; accept it with probability min(1, p(d) / q(d)), otherwise draw
    from normalize(max(0, p - q)). The result is distributed exactly as p. Returns
    (accepted (B,) bool, token (B,)), token = d where accepted.
    """
    p_d = p_BV.gather(-1, draft_B[:, None])[:, 0]
    q_d = q_BV.gather(-1, draft_B[:, None])[:, 0]
    if isinstance(generator, RowGenerators):
        u = generator.uniform(p_d)
    else:
        u = torch.rand(p_d.shape, generator=generator, device=p_d.device, dtype=p_d.dtype)
    accepted = u * q_d < p_d  # u < p/q without dividing by a zero q(d)
    residual = (p_BV - q_BV).clamp(min=0)
    # Where p == q the residual is empty, but then d is accepted with probability 1 anyway.
    empty = residual.sum(dim=-1, keepdim=True) <= 0
    residual = torch.where(empty, p_BV, residual)
    fallback = sample(residual / residual.sum(dim=-1, keepdim=True), generator)
    return accepted, torch.where(accepted, draft_B, fallback)
