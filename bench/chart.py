"""The report's chart (PNG), when matplotlib is installed: every target as measured /
goal on one scale (>= 1: met), and the end-to-end seconds per backend."""

from __future__ import annotations

import statistics
from typing import Any


def draw(targets: list[dict[str, Any]], e2e: dict[str, Any] | None, path: str) -> str | None:
    """Writes the chart to ``path``; returns why not (a one-line note) if it could not."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed: no chart (pip install 'nano-graphrag-redis[bench]' or matplotlib)"
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    rows = [t for t in targets if t["score"] is not None]
    numbers = [i for i, t in enumerate(targets, 1) if t["score"] is not None]  # as in the report's table
    heights = [0.42 * len(rows) + 1.5] + ([2.2] if e2e else [])
    fig, axes = plt.subplots(
        len(heights), 1, figsize=(14, sum(heights) + 1), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    ax = axes[0][0]
    cap = 3.0  # longer bars would squash the others; the label gives the value
    scores = [min(t["score"], cap) for t in rows]
    colors = ["#2e7d32" if t["met"] else "#c62828" for t in rows]
    names = [f"{i}. {t['name']}" for i, t in zip(numbers, rows, strict=True)]
    ax.barh(range(len(rows)), scores, color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    for i, t in enumerate(rows):
        label = f"{t['fmt'].format(t['value'])} (goal {t['goal']})"
        box = {"facecolor": "white", "edgecolor": "none", "pad": 1}  # readable where it crosses the goal line
        ax.text(min(t["score"], cap) + 0.03, i, label, va="center", fontsize=8, bbox=box)
    ax.set_yticks(range(len(rows)), [n if len(n) < 90 else n[:87] + "..." for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, cap + 1.2)
    ax.set_xlabel("measured / goal (goal / measured for upper bounds): >= 1 means met; bars capped at 3")
    ax.set_title("Targets: green met, red missed (medians of rounds)")
    if e2e:
        ax2 = axes[1][0]
        labels = list(e2e["rounds"])
        insert = [statistics.median(r["insert_s"] for r in e2e["rounds"][b]) for b in labels]
        query = [statistics.median(r["query_s"] for r in e2e["rounds"][b]) for b in labels]
        ax2.barh(labels, insert, color="#1565c0", label="insert")
        ax2.barh(labels, query, left=insert, color="#90caf9", label="queries")
        ax2.invert_yaxis()
        ax2.set_xlabel("seconds (median of rounds)")
        ax2.set_title("End to end: offline GraphRAG insert + queries per key-value backend")
        ax2.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
