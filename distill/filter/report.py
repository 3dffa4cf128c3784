"""summary.json, report.md, contamination.jsonl and the PNG plots of a filter run.

    summary = summarize(records, decisions, problems, bad, counts, cfg)
    write_report(out, summary, records, decisions, problems, bad, plots=True)

Everything here is a function of the decisions, never of timing, so a resumed run writes the same
files as an uninterrupted one (rates and the time breakdown go to timing.json instead).
Plots (matplotlib, Agg): rejections.png (samples per first reject reason), pass_rates.png
(teacher pass rate per problem), lengths.png (reasoning characters and completion tokens, all
samples vs kept), sources.png (kept and rejected per source).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from distill.filter.writers import atomic_write, write_json_atomic, write_text_atomic

_BINS = np.linspace(0.0, 1.0, 11)
REPORT_HITS = 500  # contamination hits listed in report.md; contamination.jsonl has all


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    return {"n": len(values), "mean": round(float(a.mean()), 1),
            "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "max": float(a.max())}


def summarize(records: dict, decisions: dict, problems: dict, bad: list, counts: dict,
              cfg) -> dict:
    rows = list(records.values())
    kept = [r for r in rows if decisions[r["id"]]["kept"]]
    first = Counter(decisions[r["id"]]["reject_reason"] for r in rows
                    if not decisions[r["id"]]["kept"])
    every = Counter(reason for r in rows for reason in decisions[r["id"]]["reasons"])
    status = Counter(r["verdict"]["status"] if r["verdict"]["status"] != "ok" else
                     ("correct" if r["verdict"]["correct"] else "incorrect") for r in rows)
    rates = [p["pass_rate"] for p in problems.values() if p["pass_rate"] is not None]
    kept_problems = {r["problem_id"] for r in kept}
    sources: dict[str, Counter] = {}
    for r in rows:
        c = sources.setdefault(r["source"], Counter())
        c["samples"] += 1
        c["kept"] += decisions[r["id"]]["kept"]
        c["correct"] += r["verdict"]["status"] == "ok" and bool(r["verdict"]["correct"])
    hits = [h for p in problems.values() for h in p["contamination"]]
    return {
        "inputs": list(cfg.inputs), "samples": len(rows), "bad_rows": len(bad),
        "problems": len(problems), "kept": len(kept), "rejected": len(rows) - len(kept),
        "reject_reasons": dict(first.most_common()), "rule_failures": dict(every.most_common()),
        "verdicts": dict(status.most_common()),
        "problems_with_kept": len(kept_problems),
        "problems_without_correct": sum(p["num_correct"] == 0 for p in problems.values()),
        "rl_prompts": sum(p["rl"] for p in problems.values()),
        "rl_band": {"min_pass_rate": cfg.rl.min_pass_rate, "max_pass_rate": cfg.rl.max_pass_rate,
                    "min_samples": cfg.rl.min_samples},
        "pass_rate_histogram": {"bins": _BINS.round(2).tolist(),
                                "counts": np.histogram(rates, _BINS)[0].tolist()},
        "duplicates": {"exact": every.get("duplicate_exact", 0),
                       "near": every.get("duplicate_near", 0)},
        "contamination": {"problems": sum(bool(p["contamination"]) for p in problems.values()),
                          "hits": len(hits),
                          "by_benchmark": dict(Counter(h["benchmark"] for h in hits))},
        "sources": {s: dict(c) for s, c in sorted(sources.items())},
        "reasoning_chars": {"all": _stats([r["reasoning_chars"] for r in rows]),
                            "kept": _stats([r["reasoning_chars"] for r in kept])},
        "completion_tokens": {"all": _stats([r["completion_tokens"] for r in rows]),
                              "kept": _stats([r["completion_tokens"] for r in kept]),
                              "estimated": any(r["tokens_estimated"] for r in rows)},
        "files": counts,
    }


def _table(header, rows) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows])


def _markdown(s: dict, problems: dict, bad: list) -> str:
    lines = ["# Filter report", "",
             f"{s['samples']} samples of {s['problems']} problems ({s['bad_rows']} bad input rows)"
             f" -> **{s['kept']} kept** in sft.jsonl, {s['rejected']} rejected, "
             f"{s['rl_prompts']} RL prompts. {s['problems_with_kept']} problems keep a sample; "
             f"{s['problems_without_correct']} have no correct one.", "",
             "## Rejections", "", "First reason per rejected sample, and every sample that breaks"
             " each rule (a sample can break several):", ""]
    reasons = sorted(set(s["reject_reasons"]) | set(s["rule_failures"]))
    lines += _table(["rule", "first reason", "breaks the rule"],
                    [[r, s["reject_reasons"].get(r, 0), s["rule_failures"].get(r, 0)]
                     for r in reasons])
    lines += ["", "## Verdicts", ""] + _table(["verdict", "samples"], s["verdicts"].items())
    lines += ["", "## Per source", ""] + _table(
        ["source", "samples", "correct", "kept"],
        [[k, v.get("samples", 0), v.get("correct", 0), v.get("kept", 0)]
         for k, v in s["sources"].items()])
    est = " (estimated as characters / 4)" if s["completion_tokens"]["estimated"] else ""
    lines += ["", "## Lengths", "", f"Completion tokens{est} and reasoning characters, all "
              "samples vs kept:", ""]
    lines += _table(["measure", "set", "n", "mean", "p50", "p90", "max"],
                    [[m, k, *(s[m][k].get(f, "-") for f in ("n", "mean", "p50", "p90", "max"))]
                     for m in ("completion_tokens", "reasoning_chars") for k in ("all", "kept")])
    h = s["pass_rate_histogram"]
    band = s["rl_band"]
    lines += ["", "## Teacher pass rates", "", f"RL prompt set (rl_prompts.jsonl): {s['rl_prompts']} "
              f"problems with a pass rate in [{band['min_pass_rate']}, {band['max_pass_rate']}] "
              f"over at least {band['min_samples']} counted verdicts.", ""] + _table(
        ["pass rate", "problems"],
        [[f"{a:.1f}-{b:.1f}", c] for a, b, c in zip(h["bins"], h["bins"][1:], h["counts"])])
    c = s["contamination"]
    lines += ["", "## Decontamination", "", f"{c['problems']} problems, {c['hits']} hits "
              f"(every hit is in contamination.jsonl)", ""]
    hits = [(pid, hit) for pid, p in problems.items() for hit in p["contamination"]]
    if hits:
        lines += _table(["problem", "benchmark", "benchmark problem", "shared n-grams", "overlap"],
                        [[pid, x["benchmark"], x["benchmark_id"], x["shared_ngrams"], x["overlap"]]
                         for pid, x in hits[:REPORT_HITS]])
        if len(hits) > REPORT_HITS:
            lines.append(f"\n... {len(hits) - REPORT_HITS} more in contamination.jsonl")
    d = s["duplicates"]
    lines += ["", "## Duplicates", "", f"{d['exact']} exact, {d['near']} near duplicates (the "
              "sample each copies is `duplicate_of` in rejected.jsonl)."]
    if bad:
        lines += ["", "## Bad input rows", ""] + _table(
            ["where", "error"], [[b.where, b.error] for b in bad[:REPORT_HITS]])
    return "\n".join(lines) + "\n"


def write_report(out: Path, summary: dict, records: dict, decisions: dict, problems: dict,
                 bad: list, plots: bool = True) -> None:
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "report.md", _markdown(summary, problems, bad))

    def hits(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            for pid, p in problems.items():
                for hit in p["contamination"]:
                    f.write(json.dumps({"problem_id": pid, **hit}, ensure_ascii=False) + "\n")

    atomic_write(out / "contamination.jsonl", hits)
    if plots:
        _plots(out, summary, records, decisions, problems)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def _plots(out: Path, s: dict, records: dict, decisions: dict, problems: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    reasons = s["reject_reasons"]
    ax.barh(list(reasons) or ["(none)"], list(reasons.values()) or [0])
    ax.set(xlabel="samples (first reject reason)", title=f"{s['kept']} kept, {s['rejected']} rejected")
    _save(fig, out / "rejections.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist([p["pass_rate"] for p in problems.values() if p["pass_rate"] is not None], _BINS)
    ax.set(xlabel="teacher pass rate", ylabel="problems", title="pass rate per problem")
    _save(fig, out / "pass_rates.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    rows = list(records.values())
    for ax, key in zip(axes, ("reasoning_chars", "completion_tokens")):
        every = [r[key] for r in rows]
        kept = [r[key] for r in rows if decisions[r["id"]]["kept"]]
        bins = np.histogram_bin_edges(every or [0], bins=30)
        ax.hist(every, bins, alpha=0.5, label="all samples")
        ax.hist(kept, bins, alpha=0.7, label="kept")
        ax.set(xlabel=key.replace("_", " "), ylabel="samples")
        ax.legend()
    _save(fig, out / "lengths.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(s["sources"]) or ["(none)"]
    kept = [s["sources"].get(n, {}).get("kept", 0) for n in names]
    total = [s["sources"].get(n, {}).get("samples", 0) for n in names]
    ax.bar(names, kept, label="kept")
    ax.bar(names, [t - k for t, k in zip(total, kept)], bottom=kept, label="rejected")
    ax.set(ylabel="samples", title="per source")
    ax.legend()
    ax.tick_params(axis="x", labelrotation=30)
    _save(fig, out / "sources.png")
