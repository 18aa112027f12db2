"""Figures of the language-model experiments, drawn from the saved run records and tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from moe_rpo.figures.style import label, save, use_style
from moe_rpo.io import read_json
from moe_rpo.values import layer_set_label


def method_label(router: str, k: int) -> str:
    return f"{label(router)}, k={k}"


def recovery_curves(records: list[dict], methods: list[str]) -> pd.DataFrame:
    """One row per setting, seed, method (of `methods`, by slug) and evaluation step: routing accuracy (mean
    over the MoE layers) and validation loss."""
    rows = []
    for record in records:
        for run in (run for slug, run in record["result"]["runs"].items() if slug in methods):
            for point in run["history"]:
                rows.append({"setting": record["setting"]["name"], "seed": record["seed"],
                             "method": method_label(run["router"], run["k"]), "step": point["step"],
                             "accuracy": float(np.mean([layer["accuracy"] for layer in point["layers"]])),
                             "val_loss": point["val_loss"], "base_val_loss": record["result"]["base_val_loss"]})
    return pd.DataFrame(rows)


def _palette(methods: list[str]) -> dict:
    return dict(zip(methods, sns.color_palette("tab10", len(methods))))


def recovery_panels(curves: pd.DataFrame, setting: str, title: str, threshold: float, stem: str, out_dir) -> list:
    """The paper's DIFF / SIM panel: share of tokens routed to the pretrained expert, and validation loss,
    against training steps; lines are medians over seeds, bands their range."""
    use_style()
    data = curves[curves["setting"] == setting]
    if data.empty:
        raise ValueError(f"no recovery runs for setting {setting!r}")
    methods = list(dict.fromkeys(data["method"]))
    colors = _palette(methods)
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for method in methods:
        stats = data[data["method"] == method].groupby("step")[["accuracy", "val_loss"]].agg(["median", "min", "max"])
        for ax, metric in ((acc_ax, "accuracy"), (loss_ax, "val_loss")):
            ax.plot(stats.index, stats[(metric, "median")], color=colors[method], lw=1.8, label=method)
            ax.fill_between(stats.index, stats[(metric, "min")], stats[(metric, "max")], color=colors[method],
                            alpha=0.15, lw=0)
    acc_ax.axhline(threshold, color="#444444", ls=":", lw=1, label=f"claim threshold {threshold:g}")
    acc_ax.set(xlabel="router training step", ylabel="tokens routed to the pretrained expert", ylim=(-0.02, 1.02),
               title="routing accuracy")
    loss_ax.axhline(data["base_val_loss"].median(), color="black", ls="--", lw=1, label="dense base model")
    loss_ax.set(xlabel="router training step", ylabel="validation loss (nats/token)", title="validation loss")
    acc_ax.legend(loc="lower right", fontsize=6, framealpha=0.9)
    loss_ax.legend(loc="upper right", fontsize=6, framealpha=0.9)
    fig.suptitle(f"{title} (median over {data['seed'].nunique()} seeds, band: range)")
    return save(fig, out_dir, stem)


def recovery_sweep(seeds: pd.DataFrame, threshold: float, out_dir) -> list:
    """Final routing accuracy against the SIM perturbation scale, one line per method (DIFF on the left)."""
    use_style()
    seeds = seeds.assign(label=[method_label(r, k) for r, k in zip(seeds["method"], seeds["k"])])
    methods = list(dict.fromkeys(seeds["label"]))
    colors = _palette(methods)
    sim = seeds[seeds["mode"] == "sim"]
    diff = seeds[seeds["mode"] == "diff"]
    fig, (diff_ax, sim_ax) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=[1, 3], sharey=True,
                                          layout="constrained")
    for i, method in enumerate(methods):
        d = diff[diff["label"] == method]["accuracy"]
        if len(d):
            diff_ax.errorbar([i], [d.median()], yerr=[[d.median() - d.min()], [d.max() - d.median()]], fmt="o",
                             color=colors[method], capsize=3)
        stats = sim[sim["label"] == method].groupby("scale")["accuracy"].agg(["median", "min", "max"])
        sim_ax.errorbar(stats.index, stats["median"], yerr=[stats["median"] - stats["min"], stats["max"] - stats["median"]],
                        marker="o", color=colors[method], capsize=3, label=method)
    for ax in (diff_ax, sim_ax):
        ax.axhline(threshold, color="#444444", ls=":", lw=1)
    diff_ax.set(xticks=[], xlim=(-1, len(methods)), title="DIFF", ylabel="final routing accuracy", ylim=(-0.02, 1.02))
    scales = sorted(sim["scale"].unique())
    sim_ax.set(xscale="log", xlabel="SIM perturbation scale (noise std / weight std)", title="SIM")
    sim_ax.set_xticks(scales, labels=[f"{scale:g}" for scale in scales])
    sim_ax.minorticks_off()
    sim_ax.legend(loc="best", fontsize=6, framealpha=0.9)
    fig.suptitle("Final share of tokens routed to the pretrained expert (median over seeds, bars: range)")
    return save(fig, out_dir, "lm_recovery_sim_sweep")


def identifiability_figure(design: pd.DataFrame, threshold: float, num_experts: int, out_dir) -> list:
    """The identifiability sweep: the share of tokens for which expert 0 is the best expert, per set of MoE
    layers, for DIFF (left) and against the SIM scale (right). Where a line stays under the threshold, no
    router can be asked to route that share of tokens to expert 0."""
    use_style()
    sets = list(dict.fromkeys(design["layers"]))
    colors = dict(zip(sets, sns.color_palette("viridis", len(sets))))
    diff, sim = design[design["mode"] == "diff"], design[design["mode"] == "sim"]
    fig, (diff_ax, sim_ax) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=[1, 3], sharey=True,
                                          layout="constrained")
    for i, layers in enumerate(sets):
        for ax, data, x in ((diff_ax, diff, lambda d: [i] * len(d)), (sim_ax, sim, lambda d: d["scale"])):
            d = data[data["layers"] == layers]
            if len(d):
                ax.errorbar(x(d), d["identifiability"], yerr=[d["identifiability"] - d["identifiability_min"],
                                                              d["identifiability_max"] - d["identifiability"]],
                            marker="o", color=colors[layers], capsize=3, label=f"MoE layers {layers}")
    for ax in (diff_ax, sim_ax):
        ax.axhline(threshold, color="#444444", ls=":", lw=1, label=f"claim threshold {threshold:g}")
    # a small perturbation makes each copy better than expert 0 on about half the tokens, independently
    sim_ax.axhline(0.5 ** (num_experts - 1), color="#999999", ls="--", lw=1,
                   label=f"$1/2^{{{num_experts - 1}}}$: small perturbations")
    diff_ax.set(xticks=range(len(sets)), xlim=(-0.6, len(sets) - 0.4), title="DIFF", ylim=(-0.02, 1.02),
                ylabel="tokens whose best expert is expert 0")
    diff_ax.set_xticklabels(sets, rotation=30, fontsize=7)
    scales = sorted(sim["scale"].unique())
    sim_ax.set(xscale="log", xlabel="SIM perturbation scale (noise std / weight std)", title="SIM")
    sim_ax.set_xticks(scales, labels=[f"{scale:g}" for scale in scales])
    sim_ax.minorticks_off()
    sim_ax.legend(loc="best", fontsize=6, framealpha=0.9)
    fig.suptitle(f"Identifiability of expert 0 on the frozen model (mean over layers; mean over "
                 f"{int(design['seeds'].max())} seeds, bars: range)")
    return save(fig, out_dir, "lm_recovery_identifiability")


def recovery_figures(records: list[dict], methods: list[str], seeds: pd.DataFrame, sim_setting: str,
                     sim_scale: float, threshold: float, out_dir) -> list:
    curves = recovery_curves(records, methods)
    return (recovery_panels(curves, "diff", "DIFF: random distractor experts", threshold, "lm_recovery_diff", out_dir)
            + recovery_panels(curves, sim_setting, f"SIM: perturbed copies (scale {sim_scale:g})", threshold,
                              "lm_recovery_sim", out_dir)
            + recovery_sweep(seeds, threshold, out_dir))


def layer_sweep_figure(sweep: pd.DataFrame, threshold: float, out_dir) -> list:
    """Route regret (top) and routing accuracy (bottom) against the number of MoE layers, per setting (columns)
    and method; points are means over seeds, bars their range."""
    use_style()
    settings = list(dict.fromkeys(sweep["setting"]))
    sweep = sweep.assign(label=[method_label(r, k) for r, k in zip(sweep["method"], sweep["k"])])
    colors = _palette(list(dict.fromkeys(sweep["label"])))
    fig, axes = plt.subplots(2, len(settings), figsize=(5.5 * len(settings), 6.5), squeeze=False, sharex="col",
                             layout="constrained")
    for column, setting in enumerate(settings):
        data = sweep[sweep["setting"] == setting].sort_values("moe_layers")
        for method, d in data.groupby("label", sort=False):
            for ax, metric in ((axes[0, column], "regret"), (axes[1, column], "accuracy")):
                ax.errorbar(d["moe_layers"], d[metric], yerr=[d[metric] - d[f"{metric}_min"], d[f"{metric}_max"] - d[metric]],
                            marker="o", capsize=3, color=colors[method], label=method)
        ticks = data.drop_duplicates("moe_layers")
        axes[0, column].set(title=setting, ylabel="route regret (val. loss - oracle, nats)")
        axes[1, column].axhline(threshold, color="#444444", ls=":", lw=1, label=f"claim threshold {threshold:g}")
        axes[1, column].set(xlabel="MoE layers", ylabel="routing accuracy", ylim=(-0.02, 1.02),
                            xticks=ticks["moe_layers"], xticklabels=ticks["layers"])
    axes[1, 0].legend(loc="best", fontsize=6, framealpha=0.9)
    fig.suptitle(f"Recovery with more MoE layers (mean over {int(sweep['seeds'].max())} seeds, bars: range)")
    return save(fig, out_dir, "lm_recovery_layers")


def draw_recovery(experiment, inputs) -> list:
    view = inputs.view
    records = [record for record in map(read_json, inputs.runs) if record.get("experiment") != "recovery_design"
               and layer_set_label(record["settings"]["layers"]) == view["layers"]]  # the claims' MoE layers
    return (identifiability_figure(pd.read_csv(inputs.tables["lm_recovery_design"]), view["threshold"],
                                   view["num_experts"], inputs.out_dir)
            + recovery_figures(records, view["methods"], pd.read_csv(inputs.tables["lm_recovery_seeds"]),
                               view["sim_setting"], view["sim_scale"], view["threshold"], inputs.out_dir)
            + layer_sweep_figure(pd.read_csv(inputs.tables["lm_recovery_layers"], dtype={"layers": str}),
                                 view["threshold"], inputs.out_dir))
