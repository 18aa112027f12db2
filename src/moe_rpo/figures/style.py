"""Shared look of every figure: the paper's light-grey panels, and saving as PNG + PDF."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

EXPERT_COLORS = sns.color_palette("Set2", 8)
METHOD_LABELS = {"standard": "standard", "standard_normalized": "standard (normalised)", "jitter": "standard + jitter",
                 "rl": "RL", "rpo": "RPO", "em": "EM", "noisy_topk": "noisy top-k", "switch": "Switch",
                 "switch_capacity": "Switch + capacity", "zloss": "router z-loss", "hash": "hash (random)",
                 "hash_balanced": "hash (balanced)", "fixed_random": "fixed random", "dselect_k": "DSelect-k",
                 "base": "BASE", "expert_choice": "Expert Choice", "loss_free": "loss-free balancing",
                 "deepseek_v3": "DeepSeek-V3 gate", "remoe": "ReMoE", "gshard_top2": "GShard top-2",
                 "gumbel_top2": "Gumbel top-2", "default_moe": "Default MoE", "moe_plus_plus": "MoE++"}


def use_style() -> None:
    sns.set_theme(style="whitegrid", context="paper", rc={
        "axes.facecolor": "#f4f4f4", "grid.color": "#c8c8c8", "axes.edgecolor": "#777777",
        "figure.dpi": 110, "savefig.dpi": 150, "axes.titlesize": 11, "legend.fontsize": 7})


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def save(fig: plt.Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write stem.png and stem.pdf into out_dir and close the figure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return paths
