"""Selection policies: which correct, clean, unique samples of each problem become SFT rows.

    rejected = select(candidates_by_problem, cfg.selection)   # {id: reason} for those dropped

A candidate is a verdict row (needs id, sample_index, completion_tokens, style). Per problem, in
this order:
1. token budget (`max_tokens`): drop -> "over_budget" for samples over it; keep_under -> the
   same, except that a problem with no sample under the budget keeps its shortest one;
2. pairing (DeepSeek-V3 §5.1's two sample types): both -> a problem without a candidate of each
   of `styles` loses them all ("unpaired"), samples of other styles go ("unpaired"), and the policy then
   runs within each style; prefer -> the `prefer` style's samples when there are any, the
   others go ("not_preferred_style");
3. policy: all; shortest (Kimi k1.5 long2short) or k_shortest -> "not_shortest";
4. max_per_problem: the first m by sample_index stay -> "max_per_problem".
Then over the whole set, `mix` -> "mix_ratio" (see `mix_rejections`).
Length is completion tokens; ties go to the lower sample_index, then the id, so the result never
depends on input order.
"""

from __future__ import annotations

import hashlib
import math

from distill.filter.config import SelectionConfig


def _by_length(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["completion_tokens"], r["sample_index"], r["id"]))


def _by_index(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["sample_index"], r["id"]))


def _reject(rows: list[dict], keep: list[dict], reason: str, out: dict) -> None:
    kept = {r["id"] for r in keep}
    for r in rows:
        if r["id"] not in kept:
            out[r["id"]] = reason


def _budget(rows: list[dict], cfg: SelectionConfig, out: dict) -> list[dict]:
    if cfg.max_tokens is None:
        return rows
    under = [r for r in rows if r["completion_tokens"] <= cfg.max_tokens]
    if not under and cfg.budget_mode == "keep_under" and rows:
        under = _by_length(rows)[:1]
    _reject(rows, under, "over_budget", out)
    return under


def _policy(rows: list[dict], cfg: SelectionConfig, out: dict) -> list[dict]:
    if cfg.policy == "all":
        return rows
    keep = _by_length(rows)[:1 if cfg.policy == "shortest" else cfg.k]
    _reject(rows, keep, "not_shortest", out)
    return keep


def _pairing(rows: list[dict], cfg: SelectionConfig, out: dict) -> list[dict]:
    if cfg.pairing == "off":
        return _policy(rows, cfg, out)
    if cfg.pairing == "prefer":
        preferred = [r for r in rows if r["style"] == cfg.prefer]
        if preferred:
            for r in rows:
                if r["style"] != cfg.prefer:
                    out[r["id"]] = "not_preferred_style"
            rows = preferred
        return _policy(rows, cfg, out)
    groups = {style: [r for r in rows if r["style"] == style] for style in cfg.styles}
    if not all(groups.values()):
        for r in rows:
            out[r["id"]] = "unpaired"
        return []
    kept = []
    for r in rows:
        if r["style"] not in groups:
            out[r["id"]] = "unpaired"
    for group in groups.values():
        kept += _policy(group, cfg, out)
    return kept


def select(candidates: dict[str, list[dict]], cfg: SelectionConfig) -> dict[str, str]:
    """{id: reason} for every candidate the policies drop (see the module docstring)."""
    out: dict[str, str] = {}
    kept_all = []
    for rows in candidates.values():
        rows = _pairing(_budget(rows, cfg, out), cfg, out)
        if cfg.max_per_problem is not None:
            ordered = _by_index(rows)
            for r in ordered[cfg.max_per_problem:]:
                out[r["id"]] = "max_per_problem"
            rows = ordered[:cfg.max_per_problem]
        kept_all += rows
    out.update(mix_rejections(kept_all, cfg.mix, cfg.seed))
    return out


def mix_rejections(rows: list[dict], mix: dict[str, float], seed: int = 0) -> dict[str, str]:
    """The largest subset of `rows` whose style counts follow the `mix` shares: with c_s rows of
    style s and share r_s (normalised), N = min over r_s > 0 of c_s / r_s and style s keeps
    floor(N * r_s) rows; styles absent from the mix keep none. Which rows stay: the lowest
    sha256(seed, id), a fixed pseudo-random choice. Returns {id: "mix_ratio"} for the rest."""
    if not mix:
        return {}
    total = sum(mix.values())
    shares = {s: v / total for s, v in mix.items() if v > 0}
    by_style: dict[str, list[dict]] = {}
    for r in rows:
        by_style.setdefault(r["style"], []).append(r)
    n = min(len(by_style.get(s, [])) / share for s, share in shares.items())
    out = {}
    for style, group in by_style.items():
        keep = math.floor(n * shares.get(style, 0.0) + 1e-9)
        group = sorted(group, key=lambda r: hashlib.sha256(f"{seed}|{r['id']}".encode()).digest())
        for r in group[keep:]:
            out[r["id"]] = "mix_ratio"
    return out
