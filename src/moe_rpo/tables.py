"""Per-seed metric tables and their summaries over seeds, from the experiments' run records."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from moe_rpo.improvement import improvement_table, oriented, rank_table
from moe_rpo.io import non_finite, read_json
from moe_rpo.values import Arm, layer_set_label
from moe_rpo.verdicts import NONNEGATIVE, SHARE, mean_effect


def per_seed_table(run_files: list[str | Path]) -> pd.DataFrame:
    """All metric rows of the given run records (one JSON per seed); a non-finite number is refused."""
    rows = []
    for path in run_files:
        records = read_json(path)["records"]
        bad = non_finite(records)
        if bad:
            raise ValueError(f"{path}: records.{bad} is not a finite number (a diverged run); rerun it")
        rows += records
    if not rows:
        raise ValueError("no metric rows in the run records: " + ", ".join(map(str, run_files)))
    return pd.DataFrame(rows)


def summarize(seeds: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean, std, median, min and max over seeds of `metrics`, one row per group of `keys`."""
    keys = list(keys)
    metrics = seeds.groupby(keys, sort=False)[list(metrics)].agg(["mean", "std", "median", "min", "max"])
    metrics.columns = [f"{metric}_{stat}" for metric, stat in metrics.columns]
    counts = seeds.groupby(keys, sort=False)["seed"].nunique().rename("seeds")
    return pd.concat([counts, metrics], axis=1).reset_index()


def seed_tables(experiment, runs: list[str], view: dict) -> dict[str, pd.DataFrame]:
    """An experiment's per-seed table and its summary over seeds."""
    return _with_summary(experiment, per_seed_table(runs))


def training_tables(experiment, runs: list[str], view: dict) -> dict[str, pd.DataFrame]:
    """A training experiment's tables; the runs under claims.readings go to its robustness table instead, each row
    with its reading's name."""
    reading = {path: read_json(path)["settings"].get("reading") for path in runs}
    tables = seed_tables(experiment, [path for path in runs if reading[path] is None], view)
    if experiment.robustness_table:
        rows = [per_seed_table([path]).assign(reading=reading[path]["name"]) for path in runs if reading[path]]
        tables[experiment.robustness_table] = pd.concat(rows) if rows else pd.DataFrame(columns=["reading"])
    return tables


def _with_summary(experiment, seeds: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {experiment.seeds_table: seeds,
            f"{experiment.stem}_summary": summarize(seeds, experiment.group_keys, experiment.metrics)}


def routing_tables(experiment, runs: list[str], view: dict) -> dict[str, pd.DataFrame]:
    """Toy 1's tables, and the exact K-optimum and best standard-reachable point of its settings."""
    from moe_rpo.toy.routing import optima  # noqa: PLC0415  (torch: only this experiment's tables need it)
    from moe_rpo.toy.settings import FixedExpertsSettings  # noqa: PLC0415

    optimum = routing_optima_table(optima(FixedExpertsSettings.of(read_json(runs[0])["settings"])))
    return seed_tables(experiment, runs, view) | {"toy_routing_optima": optimum}


def routing_optima_table(best: dict[int, dict]) -> pd.DataFrame:
    """The K-optimum and the best standard-reachable point of the routing toy, per K."""
    rows = []
    for k, entry in best.items():
        for kind, fit in entry.items():
            rows.append({"k": k, "solution": kind, "experts": " + ".join(map(str, fit["subset"])),
                         "weights": ", ".join(f"{w:.3f}" for w in fit["weights"]), "distance": fit["distance"]})
    return pd.DataFrame(rows)


def recovery_tables(experiment, runs: list[str], view: dict) -> dict[str, pd.DataFrame]:
    """The recovery experiment's tables: per seed and its summary (the claims' set of MoE layers), the per-token
    oracle per setting and MoE layer, each method's route regret per setting (means over seeds), the layer
    sweep (every set of MoE layers) and the identifiability sweep."""
    records = {path: read_json(path) for path in runs}
    design = [path for path, record in records.items() if record.get("experiment") == "recovery_design"]
    trained = [path for path in runs if path not in design]
    main = [path for path in trained if layer_set_label(records[path]["settings"]["layers"]) == view["layers"]]
    all_layers = per_seed_table(trained)
    # in the benchmark's settings the jobs also run the benchmark's methods: this experiment's own only
    seeds = own_methods(all_layers[all_layers["layers"] == view["layers"]], view["methods"])
    # every method's job of a setting and seed has the same experts, so the same oracle: one per setting and seed
    oracles = {}
    for record in map(records.get, main):
        oracles.setdefault((record["setting"]["name"], record["seed"]), record["result"]["oracle"])
    layers = pd.DataFrame([{"setting": setting, "seed": seed, "layer": layer["layer"],
                            "identifiability": layer["identifiability"], "oracle_loss": layer["oracle_loss"],
                            "expert0_loss": best["expert0_loss"], "expert0_best_share": layer["best_expert_share"][0]}
                           for (setting, seed), best in oracles.items() for layer in best["layers"]])
    oracle = layers.groupby(["setting", "layer"], sort=False).agg(
        seeds=("seed", "nunique"), identifiability=("identifiability", "mean"),
        identifiability_min=("identifiability", "min"), identifiability_max=("identifiability", "max"),
        oracle_loss=("oracle_loss", "mean"), expert0_loss=("expert0_loss", "mean")).reset_index()
    regret = seeds.groupby(["setting", "method", "k"], sort=False).agg(
        seeds=("seed", "nunique"), accuracy=("accuracy", "mean"), val_loss=("val_loss", "mean"),
        regret=("regret", "mean"), regret_to_expert0=("gap_to_base", "mean"),
        val_loss_unit_weights=("val_loss_unit_weights", "mean"), mean_weight=("mean_weight", "mean"),
        task_gradient=("task_gradient", "first")).reset_index()
    return _with_summary(experiment, seeds) | {
        "lm_recovery_oracle": oracle, "lm_recovery_regret": regret,
        "lm_recovery_layers": layer_sweep_table(all_layers, view),
        "lm_recovery_design": design_table(per_seed_table(design), view["threshold"])}


def own_methods(rows: pd.DataFrame, slugs: list[str]) -> pd.DataFrame:
    """The rows of the methods named by `slugs` (<router>_k<k>)."""
    return rows[[Arm(*arm).slug in slugs for arm in zip(rows["method"], rows["k"])]].reset_index(drop=True)


def layer_sweep_table(rows: pd.DataFrame, view: dict) -> pd.DataFrame:
    """The layer sweep: per setting, set of MoE layers and sweep method, routing accuracy, route regret and
    identifiability (mean, min and max over seeds), the claims' set of layers included."""
    rows = own_methods(rows[rows["setting"].isin(view["sweep_settings"])], view["sweep_methods"])
    return rows.groupby(["setting", "layers", "moe_layers", "method", "k"], sort=False).agg(
        seeds=("seed", "nunique"), accuracy=("accuracy", "mean"), accuracy_min=("accuracy", "min"),
        accuracy_max=("accuracy", "max"), regret=("regret", "mean"), regret_min=("regret", "min"),
        regret_max=("regret", "max"), identifiability=("identifiability", "mean"),
        val_loss=("val_loss", "mean")).reset_index().sort_values(
        ["setting", "moe_layers", "method"], kind="stable").reset_index(drop=True)


def design_table(sweep: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The identifiability sweep per setting and set of MoE layers 0..n-1: identifiability as the claims take
    it (the mean over the set's layers; then mean, min and max over seeds), the oracle loss (the lowest over
    the set's layers) and whether the set is identifiable (mean >= the claims' accuracy threshold)."""
    keys = ["setting", "mode", "scale"]
    n_layer = int(sweep["layer"].max()) + 1
    parts = []
    for n in range(1, n_layer + 1):
        per_seed = sweep[sweep["layer"] < n].groupby([*keys, "seed"], sort=False).agg(
            identifiability=("identifiability", "mean"), oracle_loss=("oracle_loss", "min"),
            expert0_loss=("expert0_loss", "first")).reset_index()
        stats = per_seed.groupby(keys, sort=False).agg(
            seeds=("seed", "nunique"), identifiability=("identifiability", "mean"),
            identifiability_min=("identifiability", "min"), identifiability_max=("identifiability", "max"),
            oracle_loss=("oracle_loss", "mean"), expert0_loss=("expert0_loss", "mean")).reset_index()
        label = "0" if n == 1 else f"0-{n - 1}"
        parts.append(stats.assign(moe_layers=n, layers=f"{label} (all)" if n == n_layer else label))
    table = pd.concat(parts, ignore_index=True)
    table["identifiable"] = table["identifiability"] >= threshold
    order = ["setting", "mode", "scale", "moe_layers", "layers"]
    table = table[order + [c for c in table.columns if c not in order]]
    return table.sort_values(["mode", "scale", "moe_layers"], kind="stable").reset_index(drop=True)


def routerless_tables(experiment, runs: list[str], view: dict) -> dict[str, pd.DataFrame]:
    """The routerless comparison's rows of the Shakespeare runs (`view`: the routerless section)."""
    return _with_summary(experiment, routerless_table(per_seed_table(runs), view))


def routerless_table(shakespeare: pd.DataFrame, routerless: dict) -> pd.DataFrame:
    """The shakespeare_moe rows of the fixed and learned routers of the routerless comparison, labelled."""
    groups = [(group, m) for group in ("fixed", "learned") for m in routerless[group]]
    parts = [shakespeare[(shakespeare["method"] == m["router"]) & (shakespeare["k"] == m["k"])].assign(router_kind=group)
             for group, m in groups]
    seeds = pd.concat(parts, ignore_index=True)
    if seeds.empty:
        raise ValueError("no shakespeare_moe rows for the routerless methods")
    return seeds


class Column(NamedTuple):
    """A benchmark column: which experiment's per-seed rows it reads, which metric, in which recovery setting
    ('diff', 'sim': the benchmark's SIM setting, None: any), which table of the page shows it, and which
    direction ranks a router first in the figure ('low', 'high', 'one': closest to 1, None: not ranked), and the
    values the metric can take, to which its interval is clipped (a t interval over two seeds can reach far
    outside them)."""
    source: str
    metric: str
    setting: str | None
    group: str
    better: str | None
    bounds: tuple[float, float] = (-np.inf, np.inf)


BENCHMARK_COLUMNS = {
    "toy_gap_to_optimum": Column("toy", "gap_to_optimum", None, "quality", "low"),
    "diff_accuracy": Column("recovery", "accuracy", "diff", "quality", "high", SHARE),
    "sim_accuracy": Column("recovery", "accuracy", "sim", "quality", "high", SHARE),
    "diff_regret": Column("recovery", "regret", "diff", "quality", "low"),
    "sim_regret": Column("recovery", "regret", "sim", "quality", "low"),
    "shakespeare_train_loss": Column("shakespeare", "train_loss", None, "quality", "low", NONNEGATIVE),
    "shakespeare_val_loss": Column("shakespeare", "val_loss", None, "quality", "low", NONNEGATIVE),
    "load_ratio": Column("shakespeare", "max_load_ratio", None, "balance", "one", (1.0, np.inf)),
    "max_vio_batch": Column("shakespeare", "max_vio_batch", None, "balance", "low", NONNEGATIVE),
    "max_vio_global": Column("shakespeare", "max_vio_global", None, "balance", "low", NONNEGATIVE),
    "gini": Column("shakespeare", "gini", None, "balance", "low", SHARE),
    "dead_experts": Column("shakespeare", "dead_experts", None, "balance", "low", SHARE),
    "route_regret": Column("shakespeare", "route_regret", None, "routing", "low", NONNEGATIVE),
    "saturation": Column("shakespeare", "saturation_mid", None, "routing", "high", SHARE),
    "flip_rate": Column("shakespeare", "flip_rate_mean", None, "routing", "low", SHARE),
    "token_specialisation": Column("shakespeare", "token_specialisation", None, "routing", None, SHARE),
}
BENCHMARK_GROUPS = ("quality", "balance", "routing")  # one display table each, narrow enough for a page


# routers.task_gradient's verdict on an arm, as the benchmark shows it
TASK_GRADIENT = {True: "yes", False: "no: only its auxiliary terms move it", None: "no router parameters",
                 "not run": "not run"}


def benchmark_table(sources: dict[str, pd.DataFrame], methods: list[dict], sim_setting: str | None) -> pd.DataFrame:
    """One row per benchmark method (router, k), and per column of BENCHMARK_COLUMNS the mean over seeds, its
    95% interval (Student's t over seeds, verdicts.mean_effect, clipped to the metric's range) and the number of
    seeds (NaN and 0 where the method did not run): toy 1's gap to the exact K-optimum; DIFF and SIM routing accuracy and route regret to
    the per-token oracle; Shakespeare train and validation loss; load balance (E x the largest expert's load,
    MaxVio per batch and global, Gini, dead experts); the stability of the routes (saturation at half of
    training, mean flip rate between evaluations), the counterfactual route regret of the final model and
    token-id specialisation. Last, whether the task loss gives the router a gradient at all
    (routers.task_gradient, recorded by the recovery runs)."""
    rows = []
    for m in methods:
        row = {"router": m["router"], "k": m["k"]}
        for name, column in BENCHMARK_COLUMNS.items():
            values = column_values(sources, m, column, sim_setting)
            effect = mean_effect(name, values, column.bounds) if len(values) else None
            low, high = (effect.low, effect.high) if effect else (np.nan, np.nan)
            row |= {f"{name}_mean": effect.value if effect else np.nan, f"{name}_low": low, f"{name}_high": high,
                    f"{name}_seeds": len(values)}
        recovery = sources["recovery"]
        flags = recovery.loc[(recovery["method"] == m["router"]) & (recovery["k"] == m["k"]), "task_gradient"]
        row["task_gradient"] = TASK_GRADIENT[flags.iloc[0] if len(flags) else "not run"]
        rows.append(row)
    return pd.DataFrame(rows)


def column_values(sources: dict[str, pd.DataFrame], method: dict, column: Column,
                  sim_setting: str | None) -> pd.Series:
    """A method's per-seed values of one benchmark column (empty where it did not run)."""
    df = sources[column.source]
    mask = (df["method"] == method["router"]) & (df["k"] == method["k"])
    if column.setting is not None:
        mask &= df["setting"] == (sim_setting if column.setting == "sim" else column.setting)
    if column.metric not in df:  # records of an older version lack the newer metrics
        return pd.Series([], dtype=float)
    return df.loc[mask, column.metric].dropna().astype(float)


def arm_label(method: dict) -> str:
    """An arm in the benchmark's numbers tables: 'rpo k=1' (arm_of_label reads it back)."""
    return f"{method['router']} k={method['k']}"


def arm_of_label(label: str) -> Arm:
    router, k = label.rsplit(" k=", 1)
    return Arm(router, int(k))


def benchmark_scores(sources: dict[str, pd.DataFrame], methods: list[dict], sim_setting: str | None) -> dict:
    """Per ranked column, each method's per-seed values oriented so that higher is better (improvement.py)."""
    return {name: {arm_label(m): oriented(column_values(sources, m, column, sim_setting).to_numpy(), column.better)
                   for m in methods}
            for name, column in BENCHMARK_COLUMNS.items() if column.better}


def benchmark_tables(experiment, runs: list[str], view: dict) -> dict[str, pd.DataFrame]:
    """The benchmark's numbers (lm_benchmark_values) and its display tables, one per column group, from the
    toy-1, recovery and Shakespeare records it reads."""
    column_of = {experiment: column for column, experiments in view["sources"].items() for experiment in experiments}
    by_source = {column: [] for column in view["sources"]}
    for path in runs:
        by_source[column_of[read_json(path)["experiment"]]].append(path)
    sources = {column: per_seed_table(paths) for column, paths in by_source.items()}
    table = benchmark_table(sources, view["methods"], view["sim_setting"])
    scores = benchmark_scores(sources, view["methods"], view["sim_setting"])
    improvement = improvement_table(scores, [arm_label(m) for m in view["references"]])
    return {f"lm_benchmark_{group}": benchmark_display(table, group) for group in BENCHMARK_GROUPS} | {
        "lm_benchmark_improvement": improvement_display(improvement), "lm_benchmark_values": table,
        "lm_benchmark_improvement_values": improvement, "lm_benchmark_ranks": rank_table(scores)}


def improvement_display(improvement: pd.DataFrame) -> pd.DataFrame:
    """The quality columns' probabilities of improvement for reading: one row per arm and reference arm, cells
    'p [low, high]', marked * where the interval excludes 0.5."""
    quality = [name for name, column in BENCHMARK_COLUMNS.items() if column.group == "quality" and column.better]
    shown = improvement[improvement["metric"].isin(quality)]
    pairs = shown[["arm", "reference"]].drop_duplicates().reset_index(drop=True)
    out = pd.DataFrame([{"router": arm.router, "k": arm.k, "reference": reference.router, "reference k": reference.k}
                        for arm, reference in zip(map(arm_of_label, pairs["arm"]), map(arm_of_label, pairs["reference"]))])
    for name in quality:
        cells = {(row.arm, row.reference): (f"{row.probability:.2f} (too few seeds)" if np.isnan(row.low) else
                                            f"{row.probability:.2f} [{row.low:.2f}, {row.high:.2f}]{'*' * row.resolved}")
                 for row in shown[shown["metric"] == name].itertuples()}
        out[name.replace("_", " ")] = [cells.get(key, "not run") for key in zip(pairs["arm"], pairs["reference"])]
    return out


def benchmark_display(table: pd.DataFrame, group: str) -> pd.DataFrame:
    """One group of the benchmark's columns for reading: 'mean [low, high]' per cell (the 95% interval over
    seeds; the mean alone for one seed), 'not run' where the method did not run; the routing group ends with
    whether the task gives the router a gradient."""
    out = table[["router", "k"]].copy()
    for name, column in BENCHMARK_COLUMNS.items():
        if column.group != group:
            continue
        cells = table[[f"{name}_{stat}" for stat in ("mean", "low", "high", "seeds")]].to_numpy()
        out[name.replace("_", " ")] = ["not run" if n == 0 else f"{mean:.3g}" if n == 1 else f"{mean:.3g} [{low:.3g}, {high:.3g}]"
                     for mean, low, high, n in cells]
    if group == "routing":
        out["task gradient"] = table["task_gradient"]
    return out
