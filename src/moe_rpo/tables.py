"""Per-seed metric tables and their summaries over seeds, from the experiments' run records."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from moe_rpo.io import read_json

GROUP_KEYS = {"routing": ["method", "k"], "collapse": ["method", "weight_decay"], "dilemma": ["method"],
              "barrier": ["method", "k"], "recovery": ["setting", "method", "k"]}
SUMMARY_METRICS = {
    "routing": ["final_distance", "gap_to_optimum", "gap_to_standard_reachable"],
    "collapse": ["pairwise_distance_ratio", "final_drift", "final_router_norm", "final_routing_accuracy",
                 "final_eval_loss"],
    "dilemma": ["final_distance", "final_weight_0", "final_weight_1"],
    "barrier": ["routes_to_b", "final_prob_b", "final_loss"],
    "recovery": ["accuracy", "min_layer_accuracy", "val_loss", "gap_to_base", "entropy", "pretrained_load",
                 "max_load"],
}


def per_seed_table(run_files: list[str | Path]) -> pd.DataFrame:
    """All metric rows of the given run records (one JSON per seed)."""
    rows = [row for path in run_files for row in read_json(path)["records"]]
    if not rows:
        raise ValueError("no metric rows in the run records: " + ", ".join(map(str, run_files)))
    return pd.DataFrame(rows)


def summarize(seeds: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """Mean, std, median, min and max over seeds of the experiment's headline metrics."""
    keys = GROUP_KEYS[experiment]
    metrics = seeds.groupby(keys, sort=False)[SUMMARY_METRICS[experiment]].agg(["mean", "std", "median", "min", "max"])
    metrics.columns = [f"{metric}_{stat}" for metric, stat in metrics.columns]
    counts = seeds.groupby(keys, sort=False)["seed"].nunique().rename("seeds")
    return pd.concat([counts, metrics], axis=1).reset_index()


def routing_optima_table(best: dict[int, dict]) -> pd.DataFrame:
    """The K-optimum and the best standard-reachable point of the routing toy, per K."""
    rows = []
    for k, entry in best.items():
        for kind, fit in entry.items():
            rows.append({"k": k, "solution": kind, "experts": " + ".join(map(str, fit["subset"])),
                         "weights": ", ".join(f"{w:.3f}" for w in fit["weights"]), "distance": fit["distance"]})
    return pd.DataFrame(rows)
