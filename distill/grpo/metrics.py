"""GRPO plots at the end of a run, from the metrics.jsonl that `distill.metrics.MetricsCallback`
writes (reward mean/std per reward function, completion length mean/max, clipped ratio, KL,
frac_reward_zero_std, our dynamic_sampling/* share, tokens/s).
`plot_metrics(run_dir)` draws the curves into `plots/grpo.png`.
"""

from __future__ import annotations

from pathlib import Path

from distill.metrics import read_metrics

PLOTTED = [("reward", "rewards/"), ("completions/mean_length", "completions/max_length"),
           ("kl", "completions/clipped_ratio"), ("frac_reward_zero_std", "dynamic_sampling/dropped_share")]


def plot_metrics(run_dir: str | Path) -> Path | None:
    """plots/grpo.png: rewards per function, completion length, KL / clip ratio, zero-std share."""
    rows = read_metrics(Path(run_dir) / "metrics.jsonl")
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, keys in zip(axes.flat, PLOTTED):
        names = sorted({k for r in rows for k in r if any(
            k == key or (key.endswith("/") and k.startswith(key) and k.endswith("/mean")) for key in keys)})
        for name in names:
            pts = [(r["step"], r[name]) for r in rows if r.get(name) is not None]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=name)
        ax.set_xlabel("step")
        if names:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(run_dir) / "plots" / "grpo.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
