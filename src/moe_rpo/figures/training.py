"""Figures of the from-scratch experiments (Shakespeare MoE, pretraining, routerless) and of the router
benchmark, drawn from the saved run records and tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from moe_rpo.figures.recovery import method_label
from moe_rpo.figures.style import save, use_style
from moe_rpo.io import read_json
from moe_rpo.tables import BENCHMARK_COLUMNS


def _label(router: str, k: int) -> str:
    return "dense" if router == "dense" else method_label(router, k)


def training_curves(records: list[dict]) -> pd.DataFrame:
    """One row per run and evaluation step: the mean training loss since the previous evaluation and the
    validation loss."""
    rows = []
    for record in records:
        result = record["result"]
        for point in result["history"][1:]:
            rows.append({"method": _label(result["router"], result["k"]), "seed": result["seed"],
                         "step": point["step"], "train_loss": point["train_loss"], "val_loss": point["val_loss"]})
    return pd.DataFrame(rows)


def curves_figure(curves: pd.DataFrame, title: str, stem: str, out_dir) -> list:
    """Training and validation loss against steps, one line per method (median over seeds, band: range)."""
    use_style()
    methods = list(dict.fromkeys(curves["method"]))
    colors = dict(zip(methods, sns.color_palette("tab10", len(methods))))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, layout="constrained")
    for ax, metric, name in zip(axes, ("train_loss", "val_loss"), ("training loss", "validation loss")):
        for method in methods:
            stats = curves[curves["method"] == method].groupby("step")[metric].agg(["median", "min", "max"])
            ax.plot(stats.index, stats["median"], color=colors[method], lw=1.8, label=method)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=colors[method], alpha=0.15, lw=0)
        ax.set(xlabel="training step", ylabel=f"{name} (nats/token)", title=name)
    axes[1].legend(loc="upper right", fontsize=7, framealpha=0.9)
    fig.suptitle(f"{title} (median over {curves['seed'].nunique()} seeds, band: range)")
    return save(fig, out_dir, stem)


def final_losses_figure(seeds: pd.DataFrame, title: str, stem: str, out_dir) -> list:
    """Final training and validation loss per method (dots: seeds; bars: medians), sorted by validation loss."""
    use_style()
    data = seeds.assign(label=[_label(r, k) for r, k in zip(seeds["method"], seeds["k"])])
    order = data.groupby("label")["val_loss"].median().sort_values().index.tolist()
    long = data.melt(id_vars=["label", "seed"], value_vars=["train_loss", "val_loss"], var_name="split",
                     value_name="loss").replace({"split": {"train_loss": "train", "val_loss": "validation"}})
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(order) + 1.5), layout="constrained")
    sns.pointplot(long, y="label", x="loss", hue="split", order=order, estimator="median", errorbar=("pi", 100),
                  dodge=0.4, linestyle="none", markers=["o", "s"], palette=["#4c72b0", "#dd8452"], ax=ax)
    ax.set(ylabel="", xlabel="final loss on fixed windows (nats/token; median, bars: range over seeds)", title=title)
    return save(fig, out_dir, stem)


def routerless_figure(seeds: pd.DataFrame, out_dir) -> list:
    """Validation loss against the loss increase when tokens are sent to other experts, per run: fixed
    routers against learned ones. If loss alone told learned routing apart, the groups would separate along x."""
    use_style()
    data = seeds.assign(method=[_label(r, k) for r, k in zip(seeds["method"], seeds["k"])],
                        router=seeds["router_kind"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    sns.scatterplot(data, x="val_loss", y="misrouting_penalty", hue="method", style="router", s=70, ax=axes[0])
    axes[0].set(xlabel="validation loss (nats/token)", ylabel="loss increase when misrouted (nats/token)",
                title="loss against dependence on the routing")
    sns.scatterplot(data, x="val_loss", y="max_load_ratio", hue="method", style="router", s=70, ax=axes[1],
                    legend=False)
    axes[1].axhline(1, color="black", ls=":", lw=1)
    axes[1].set(xlabel="validation loss (nats/token)", ylabel="E x largest expert load (1 = balanced)",
                title="load balance")
    axes[0].legend(fontsize=7, framealpha=0.9)
    fig.suptitle("Fixed (no trainable router) against learned routers, Shakespeare MoE runs (one point per seed)")
    return save(fig, out_dir, "lm_routerless")


def benchmark_figure(table: pd.DataFrame, out_dir) -> list:
    """The benchmark as heatmaps, one panel per column group (quality, balance, routing) stacked so that the numbers
    read at page width: a router per row, a column per metric, each column coloured by rank in the direction that is
    better (darker = better; white: not ranked), cells annotated with the mean."""
    use_style()
    labels = [_label(r, k) for r, k in zip(table["router"], table["k"])]
    means = pd.DataFrame({name: table[f"{name}_mean"].to_numpy(float) for name in BENCHMARK_COLUMNS}, index=labels)
    score = pd.DataFrame(1.0, index=labels, columns=means.columns)  # unranked columns stay white
    for name, column in BENCHMARK_COLUMNS.items():
        if column.better is not None:
            values = (means[name] - 1).abs() if column.better == "one" else means[name]
            score[name] = values.rank(ascending=column.better != "high", pct=True)
    groups = {}
    for name, column in BENCHMARK_COLUMNS.items():
        groups.setdefault(column.group, []).append(name)
    widest = max(map(len, groups.values()))
    row_height = 0.3 * len(labels) + 1.3
    fig, axes = plt.subplots(len(groups), 1, figsize=(0.95 * widest + 2.6, row_height * len(groups) + 0.4),
                             layout="constrained")
    notes = {"load_ratio": " (1 = balanced)", "token_specialisation": " (not ranked)"}
    for ax, (group, names) in zip(axes, groups.items()):
        ax.grid(False)
        ax.set_facecolor("white")
        annotations = means[names].map(lambda v: "" if np.isnan(v) else f"{v:.3g}")
        sns.heatmap(1 - score[names], annot=annotations, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False,
                    linewidths=0.5, ax=ax, annot_kws={"fontsize": 8})
        for row, column in zip(*np.nonzero(means[names].isna().to_numpy())):  # heatmap leaves NaN cells blank
            ax.text(column + 0.5, row + 0.5, "not run", ha="center", va="center", fontsize=7, color="#999999")
        ax.set_xlim(0, widest)  # every panel's cells the same size
        ax.set_xticklabels([name.replace("_", " ") + notes.get(name, "") for name in names], rotation=20, ha="right")
        ax.set_title(group, loc="left")
    fig.suptitle("Router benchmark: means over seeds (colour: rank within the column, darker = better)")
    return save(fig, out_dir, "lm_benchmark")


def coactivation_figure(records: list[dict], out_dir, experiments: tuple[str, ...]) -> list:
    """Expert co-activation of every Shakespeare arm whose tokens use more than one expert: C[i][j], the share
    of expert i's tokens that expert j also processes (mean over seeds and MoE layers); one heatmap per arm. Reads the
    records of `experiments` (the benchmark's Shakespeare column) among the benchmark's."""
    use_style()
    by_arm = {}
    for record in records:
        if record["experiment"] in experiments and record["result"]["final"]["coactivation"] is not None:
            result = record["result"]
            by_arm.setdefault(_label(result["router"], result["k"]), []).append(result["final"]["coactivation"])
    arms = {arm: _mean_over_using_seeds(np.array(mats)) for arm, mats in by_arm.items()}
    arms = {arm: m for arm, m in arms.items() if np.nanmax(m * (1 - np.eye(len(m)))) > 0}  # k = 1 arms: identity
    if not arms:
        fig, ax = plt.subplots(figsize=(6, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no Shakespeare arm sends a token to more than one expert", ha="center", va="center")
        return save(fig, out_dir, "lm_benchmark_coactivation")
    columns = min(4, len(arms))
    rows = -(-len(arms) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3 * rows), layout="constrained", squeeze=False)
    for ax, (arm, matrix) in zip(axes.flat, arms.items()):
        sns.heatmap(matrix, vmin=0, vmax=1, cmap="Blues", annot=len(matrix) <= 8, fmt=".2f", cbar=False, square=True,
                    annot_kws={"fontsize": 6}, ax=ax)
        ax.set(title=arm, xlabel="also expert j", ylabel="tokens of expert i")
    for ax in list(axes.flat)[len(arms):]:
        ax.axis("off")
    fig.suptitle("Expert co-activation on the Shakespeare validation windows: the share of expert i's tokens that\n"
                 "expert j also processes (mean over MoE layers, and over the seeds where expert i got tokens;\n"
                 "MoE++'s null experts follow its FFN experts: zero, copy, constant)")
    return save(fig, out_dir, "lm_benchmark_coactivation")


def _mean_over_using_seeds(matrices: np.ndarray) -> np.ndarray:
    """[E, E] from [seeds, E, E]: row i averaged over the seeds whose expert i got tokens (diagonal > 0); NaN
    (a blank row) where it never did."""
    used = np.diagonal(matrices, axis1=1, axis2=2) > 0  # [seeds, E]
    total = (matrices * used[:, :, None]).sum(0)
    with np.errstate(invalid="ignore"):
        return total / used.sum(0)[:, None]


def draw_training(experiment, inputs) -> list:
    """The curves (of `view['curve_methods']`, or every method) and final losses of a training experiment."""
    title, shown_methods = inputs.view["title"], inputs.view["curve_methods"]
    records = [read_json(path) for path in inputs.runs]
    shown = [r for r in records if not shown_methods or r["method"] in shown_methods]
    return (curves_figure(training_curves(shown), title, f"{experiment.stem}_curves", inputs.out_dir)
            + final_losses_figure(pd.read_csv(inputs.tables[experiment.seeds_table]), title,
                                  f"{experiment.stem}_final", inputs.out_dir))


def draw_routerless(experiment, inputs) -> list:
    return routerless_figure(pd.read_csv(inputs.tables["lm_routerless_seeds"]), inputs.out_dir)


def draw_benchmark(experiment, inputs) -> list:
    return (benchmark_figure(pd.read_csv(inputs.tables["lm_benchmark_values"]), inputs.out_dir)
            + coactivation_figure(list(map(read_json, inputs.runs)), inputs.out_dir, inputs.view["sources"]["shakespeare"]))
