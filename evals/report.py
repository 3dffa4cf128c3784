"""report.md and PNG plots for an eval run, and `compare` for several runs side by side.

    write_report(document, rows, out_dir)   # document = results.json's content, rows = samples
    markdown, plot = compare([run_a, run_b], out_dir)

Plots (matplotlib, Agg backend, so no display is needed): accuracy.png (pass@1 ± se per benchmark
and model), lengths.png (completion and reasoning token histograms), budget.png (accuracy vs
reasoning tokens, when a budget sweep ran). Accuracies are printed as percentages with one
decimal, the way DeepSeek's tables show them. Every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from model.checkpoint import atomic_write


def write_text_atomic(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def pct(x: float | None) -> str:
    """An accuracy in [0, 1] as a percentage with one decimal ('-' when missing)."""
    return "-" if x is None else f"{100 * x:.1f}"


def _pm(mean: float, se: float | None) -> str:
    return pct(mean) + ("" if se is None else f" ± {pct(se)}")


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def _kmax(r: dict) -> str:
    return max(r["pass@k"], key=int)


def headline_table(results: list[dict]) -> str:
    """The lines a finished eval prints: pass@1 ± se, pass@k at the largest k and mean completion
    tokens, one row per model and benchmark, columns aligned for a terminal."""
    header = ["model", "benchmark", "pass@1 %", "pass@k %", "mean tokens"]
    rows = []
    for r in results:
        k = _kmax(r)
        tokens = r["completion_tokens"]["mean"] if r["completion_tokens"] else None
        rows.append([r["model"], r["benchmark"], _pm(r["pass@1"]["mean"], r["pass@1"]["se"]),
                     f"{pct(r['pass@k'][k])} (k={k})", _num(tokens)])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
                     for row in [header, *rows]) + "\n"


# -- report.md ----------------------------------------------------------------------------------

def _accuracy_section(results: list[dict]) -> list[str]:
    rows = []
    for r in results:
        k = _kmax(r)
        maj = r["maj@k"][k] if r["maj@k"] else None
        rows.append([r["model"], r["benchmark"], r["num_problems"], r["samples_per_problem"],
                     _pm(r["pass@1"]["mean"], r["pass@1"]["se"]), f"{pct(r['pass@k'][k])} (k={k})",
                     f"{pct(maj)} (k={k})"])
    out = ["## Accuracy (%)", "", "pass@1 is the mean over the k samples of each problem, ± its "
           "standard error over problems; pass@k is the unbiased estimator; maj@k votes over "
           "verified-equivalent answers.", ""]
    out += _table(["model", "benchmark", "problems", "samples/problem", "pass@1", "pass@k",
                   "maj@k"], rows)
    out += ["", "### pass@k and maj@k for every k", ""]
    detail = [[r["model"], r["benchmark"], k, pct(r["pass@k"][k]),
               pct(r["maj@k"][k]) if r["maj@k"] else "-"] for r in results for k in r["pass@k"]]
    return out + _table(["model", "benchmark", "k", "pass@k", "maj@k"], detail)


def _lengths_section(results: list[dict]) -> list[str]:
    def stats(s):
        return "-" if s is None else f"{_num(s['mean'])} / {_num(s['median'])} / {_num(s['p90'])}"

    rows = [[r["model"], r["benchmark"], stats(r["completion_tokens"]),
             stats(r["reasoning_tokens"]), pct(r["truncation_rate"]), pct(r["format_adherence"]),
             pct(r["eos_rate"])]
            for r in results]
    return ["## Lengths and format", "", "Tokens as mean / median / p90. Truncated: stopped by the "
            "token limit or reasoning never closed. Format: one think block, then an answer. "
            "EOS: the model ended by itself.", ""] + _table(
        ["model", "benchmark", "completion tokens", "reasoning tokens", "truncated %",
         "format %", "EOS %"], rows)


def _budget_section(results: list[dict]) -> list[str]:
    rows = [[r["model"], r["benchmark"], p["budget"], _pm(p["accuracy"], p["accuracy_se"]),
             _num(p["mean_reasoning_tokens"]), _num(p["mean_completion_tokens"]), p["num_samples"]]
            for r in results for p in r.get("budget_curve") or []]
    if not rows:
        return []
    return ["## Budget forcing (s1)", "", "Thinking capped at the budget, then `</think>` and the "
            "answer.", ""] + _table(["model", "benchmark", "budget", "accuracy %",
                                     "reasoning tokens", "completion tokens", "samples"], rows)


def _provenance_section(results: list[dict]) -> list[str]:
    rows = [[r["model"], r["backend"], f"`{r['model_path']}`", r["benchmark"],
             f"`{r['benchmark_revision'] or '-'}`", r["seed"],
             ", ".join(f"{k}={v}" for k, v in r["sampling"].items()),
             f"`{r['prompt_template_hash']}`"]
            for r in results]
    return ["## Provenance", ""] + _table(["model", "backend", "path", "benchmark", "revision",
                                           "seed", "sampling", "prompt hash"], rows)


def render_markdown(document: dict, plots: Sequence[str]) -> str:
    results = document["results"]
    lines = ["# Evaluation report", "", f"Samples: `{document.get('samples', 'samples.jsonl')}`; "
             "machine-readable numbers: `results.json`.", ""]
    for section in (_accuracy_section, _lengths_section, _budget_section, _provenance_section):
        part = section(results)
        if part:
            lines += part + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    return "\n".join(lines)


# -- plots --------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    _pyplot().close(fig)
    return path


def _bars(ax, groups: list[str], series: dict[str, dict[str, tuple[float, float | None]]]) -> None:
    """Grouped bars: x = groups, one bar per series, value ± se in percent."""
    width = 0.8 / max(1, len(series))
    for s, (name, values) in enumerate(series.items()):
        xs = [g + s * width - 0.4 + width / 2 for g in range(len(groups))]
        ys = [100 * values.get(b, (0.0, None))[0] for b in groups]
        es = [100 * (values.get(b, (0.0, None))[1] or 0.0) for b in groups]
        bars = ax.bar(xs, ys, width, yerr=es, capsize=3, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize="x-small")
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize="small")


def plot_accuracy(results: list[dict], path: Path) -> Path:
    plt = _pyplot()
    benchmarks = list(dict.fromkeys(r["benchmark"] for r in results))
    series: dict[str, dict] = {}
    for r in results:
        series.setdefault(r["model"], {})[r["benchmark"]] = (r["pass@1"]["mean"], r["pass@1"]["se"])
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(benchmarks) + 2), 3.5))
    _bars(ax, benchmarks, series)
    ax.set_title("pass@1 (± se) per benchmark")
    return _save(fig, path)


def plot_lengths(rows: list[dict], path: Path) -> Path:
    plt = _pyplot()
    benchmarks = list(dict.fromkeys(r["benchmark"] for r in rows))
    fig, axes = plt.subplots(2, len(benchmarks), figsize=(4 * len(benchmarks), 5), squeeze=False)
    for col, bench in enumerate(benchmarks):
        at = [r for r in rows if r["benchmark"] == bench]
        for row, field in enumerate(("completion_tokens", "reasoning_tokens")):
            ax = axes[row][col]
            for model in dict.fromkeys(r["model"] for r in at):
                values = [r[field] for r in at if r["model"] == model and r[field] is not None]
                if values:
                    ax.hist(values, bins=20, alpha=0.5, label=model)
            ax.set_xlabel(field.replace("_", " "))
            ax.set_title(bench, fontsize="small")
            if row == 0 and col == 0:
                ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def plot_budget(results: list[dict], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    top = 0.0
    for r in results:
        curve = r.get("budget_curve") or []
        if not curve:
            continue
        xs = [p["mean_reasoning_tokens"] for p in curve]
        top = max([top] + [100 * p["accuracy"] for p in curve])
        ax.plot(xs, [100 * p["accuracy"] for p in curve], marker="o",
                label=f"{r['model']} / {r['benchmark']}")
        for x, p in zip(xs, curve):
            ax.annotate(f"B={p['budget']}", (x, 100 * p["accuracy"]), fontsize="x-small")
    ax.set_ylim(0, min(100, max(5.0, 1.15 * top)))
    ax.set_xlabel("mean reasoning tokens")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("budget forcing: accuracy vs thinking tokens")
    ax.legend(fontsize="small")
    return _save(fig, path)


def write_report(document: dict, rows: list[dict], out_dir: Path) -> list[Path]:
    """report.md and the plots into out_dir; returns the written paths."""
    out_dir, results = Path(out_dir), document["results"]
    plots = [plot_accuracy(results, out_dir / "accuracy.png")]
    if rows:
        plots.append(plot_lengths(rows, out_dir / "lengths.png"))
    if any(r.get("budget_curve") for r in results):
        plots.append(plot_budget(results, out_dir / "budget.png"))
    write_text_atomic(out_dir / "report.md", render_markdown(document, [str(p) for p in plots]))
    return [out_dir / "report.md", *plots]


# -- several runs -------------------------------------------------------------------------------

def compare(run_dirs: Sequence[str | Path], out_dir: str | Path = "runs/eval-compare",
            overwrite: bool = False) -> tuple[str, Path]:
    """One table and one plot for several runs' results.json; writes compare.md and compare.png
    into out_dir and returns (markdown, plot path). An out_dir that already holds a comparison
    is an error unless `overwrite` (a finished comparison is never replaced silently)."""
    if not run_dirs:
        raise ValueError("compare: name at least one run directory")
    existing = [p for p in (Path(out_dir) / "compare.md", Path(out_dir) / "compare.png") if p.exists()]
    if existing and not overwrite:
        raise ValueError(f"compare: {existing[0]} exists; pass --force to replace it or "
                              "--out to write elsewhere")
    entries = []
    for run in map(Path, run_dirs):
        path = run / "results.json" if run.is_dir() else run
        if not path.is_file():
            raise FileNotFoundError(f"compare: {path} not found (is {run} an eval run directory?)")
        for r in json.loads(path.read_text(encoding="utf-8"))["results"]:
            entries.append((run.name if run.is_dir() else run.parent.name, r))
    rows = []
    for run, r in entries:
        k = _kmax(r)
        maj = r["maj@k"][k] if r["maj@k"] else None
        tokens = r["completion_tokens"]["mean"] if r["completion_tokens"] else None
        rows.append([run, r["model"], r["benchmark"], _pm(r["pass@1"]["mean"], r["pass@1"]["se"]),
                     f"{pct(r['pass@k'][k])} (k={k})", f"{pct(maj)} (k={k})", _num(tokens),
                     pct(r["truncation_rate"])])
    markdown = "\n".join(_table(["run", "model", "benchmark", "pass@1 %", "pass@k %", "maj@k %",
                                 "mean tokens", "truncated %"], rows)) + "\n"
    out_dir = Path(out_dir)
    plt = _pyplot()
    benchmarks = list(dict.fromkeys(r["benchmark"] for _, r in entries))
    series: dict[str, dict] = {}
    for run, r in entries:
        series.setdefault(f"{run}: {r['model']}", {})[r["benchmark"]] = (r["pass@1"]["mean"],
                                                                         r["pass@1"]["se"])
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(benchmarks) + 2), 3.5))
    _bars(ax, benchmarks, series)
    ax.set_title("pass@1 (± se) by run")
    plot = _save(fig, out_dir / "compare.png")
    write_text_atomic(out_dir / "compare.md", "# Eval comparison\n\n" + markdown +
                      f"\n![compare]({plot.name})\n")
    return markdown, plot
