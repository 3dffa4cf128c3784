"""Pass 2: from stored verdict rows to one decision per sample and one pass rate per problem.

    decisions, problems = decide(records, cfg)

Per sample (records in input order): every failing hygiene rule, then "verifier_error" /
"reference_unparseable" / "incorrect" from the verdict, "contaminated" when its problem overlaps
a benchmark; a sample with none of these is a candidate, checked for duplicates against the
candidates before it ("duplicate_exact" / "duplicate_near": a copy of a rejected sample is not
a duplicate, it is judged on its own); the candidates left go through the selection policies.
A decision: {"kept", "reasons" (all that apply, in that order), "reject_reason" (the first),
"duplicate_of", "similarity"}.

Per problem: num_samples (verdicts counted: status "ok"), num_correct, pass_rate (None when
nothing was counted), contamination hits, and whether it enters the RL prompt set: pass rate in
[min_pass_rate, max_pass_rate], at least `min_samples` counted, no contamination and no
unverifiable reference.
"""

from __future__ import annotations

from distill.filter.config import FilterConfig
from distill.filter.dedup import Deduper
from distill.filter.hygiene import hygiene_failures
from distill.filter.select import select

_STATUS_REASON = {"error": "verifier_error", "unverifiable": "reference_unparseable"}


def _verdict_reasons(r: dict) -> list[str]:
    v = r["verdict"]
    if v["status"] != "ok":
        return [_STATUS_REASON[v["status"]]]
    return [] if v["correct"] else ["incorrect"]


def decide(records: list[dict], cfg: FilterConfig) -> tuple[dict[str, dict], dict[str, dict]]:
    decisions: dict[str, dict] = {}
    problems: dict[str, dict] = {}
    deduper = Deduper(cfg.dedup)
    candidates: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: r["seq"]):
        reasons = hygiene_failures(r["hygiene"], r["kind"], cfg.hygiene) + _verdict_reasons(r)
        if r["contamination"]:
            reasons.append("contaminated")
        d = {"kept": False, "reasons": reasons, "duplicate_of": None, "similarity": None}
        if not reasons and (cfg.dedup.exact or cfg.dedup.near):
            scope = r["problem_id"] if cfg.dedup.scope == "problem" else ""
            dup = deduper.check(scope, r["id"], r["hash"], r.get("minhash"))
            if dup is not None:
                reasons.append(dup[0])
                d["duplicate_of"], d["similarity"] = dup[1], round(dup[2], 4)
        if not reasons:
            candidates.setdefault(r["problem_id"], []).append(r)
        decisions[r["id"]] = d
        p = problems.setdefault(r["problem_id"], {
            "num_samples": 0, "num_correct": 0, "unverifiable": 0, "errors": 0,
            "contamination": r["contamination"], "source": r["source"], "kind": r["kind"]})
        status = r["verdict"]["status"]
        if status == "ok":
            p["num_samples"] += 1
            p["num_correct"] += bool(r["verdict"]["correct"])
        else:
            p["unverifiable" if status == "unverifiable" else "errors"] += 1
    for sample_id, reason in select(candidates, cfg.selection).items():
        decisions[sample_id]["reasons"].append(reason)
    for d in decisions.values():
        d["kept"] = not d["reasons"]
        d["reject_reason"] = d["reasons"][0] if d["reasons"] else None
    rl = cfg.rl
    for p in problems.values():
        p["pass_rate"] = p["num_correct"] / p["num_samples"] if p["num_samples"] else None
        p["rl"] = (p["pass_rate"] is not None and p["num_samples"] >= rl.min_samples
                   and rl.min_pass_rate <= p["pass_rate"] <= rl.max_pass_rate
                   and not p["contamination"] and not p["unverifiable"])
    return decisions, problems
