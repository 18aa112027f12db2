"""The toy experiments' figures: trajectories, final distances, expert positions, weight paths, landscapes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.colors import LinearSegmentedColormap, Normalize

from moe_rpo.figures.style import EXPERT_COLORS, label, save, use_style
from moe_rpo.io import read_json
from moe_rpo.toy.optimum import best_subset_fit, standard_weight_grid
from moe_rpo.values import Arm


def _draw_experts(ax, experts: np.ndarray, target: np.ndarray | None = None) -> None:
    for i, e in enumerate(experts):
        ax.plot([0, e[0]], [0, e[1]], color=EXPERT_COLORS[i % 8], lw=2.5, alpha=0.8, label=f"Expert {i}")
    if target is not None:
        ax.scatter(*target, marker="*", s=220, color="#e8322b", zorder=5, label="target")


STEP_CMAP = LinearSegmentedColormap.from_list("steps", plt.get_cmap("Blues")(np.linspace(0.15, 1.0, 256)))


def _trajectory(ax, points: np.ndarray):
    """The MoE output after every step, light (first) to dark blue (last), joined by a faint line."""
    ax.plot(points[:, 0], points[:, 1], color="#08306b", lw=0.6, alpha=0.35, zorder=3)
    return ax.scatter(points[:, 0], points[:, 1], c=np.arange(len(points)), cmap=STEP_CMAP,
                      norm=Normalize(0, len(points) - 1), s=22, edgecolors="none", zorder=4)


def routing_trajectories(arrays: dict, settings: dict, seed: int, out_dir) -> list:
    """The paper's panel grid: a row per K, a column per router; MoE output after every step (a router not run
    with some K leaves its panel empty)."""
    use_style()
    experts, target = np.array(settings["experts"]), np.array(settings["target"])
    runs = {Arm.of(m) for m in settings["methods"]}
    methods = list(dict.fromkeys(m["router"] for m in settings["methods"]))
    ks = sorted({m["k"] for m in settings["methods"]})
    fig, axes = plt.subplots(len(ks), len(methods), figsize=(2.8 * len(methods), 2.8 * len(ks)), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for row, k in enumerate(ks):
        for col, method in enumerate(methods):
            ax = axes[row, col]
            if Arm(method, k) not in runs:
                ax.axis("off")
                continue
            _draw_experts(ax, experts, target)
            points = _trajectory(ax, arrays[Arm(method, k).slug])
            ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal", title=f"K={k} {label(method)}")
    axes[0, 0].legend(loc="lower left", framealpha=0.9, fontsize=6)
    fig.colorbar(points, ax=axes, shrink=0.6, label="training step")
    fig.suptitle(f"Routing trajectories (seed {seed}): MoE output after every step; red star: target")
    return save(fig, out_dir, "toy_routing_trajectories")


def routing_final_distance(seeds: pd.DataFrame, optima: pd.DataFrame, out_dir) -> list:
    """Final distance to the target of every seed, per method and K, with the K-optimum marked."""
    use_style()
    data = seeds.assign(method=seeds["method"].map(label), K=seeds["k"].map(lambda k: f"K={k}"))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    np.random.seed(0)  # seaborn's stripplot jitters with numpy's global generator: seeded, the figure is reproducible
    sns.stripplot(data=data, x="method", y="final_distance", hue="K", dodge=True, ax=ax, size=6, alpha=0.8)
    sns.pointplot(data=data, x="method", y="final_distance", hue="K", dodge=0.4, estimator="median",
                  errorbar=None, markers="_", markersize=20, linestyle="none", ax=ax, legend=False, palette="dark")
    for _, row in optima[optima["solution"] == "optimum"].iterrows():
        ax.axhline(row["distance"], ls="--", lw=1, color="grey")
        ax.text(ax.get_xlim()[1], row["distance"], f" K={row['k']} optimum", va="center", fontsize=7)
    ax.set(ylabel="final distance to target", xlabel="", title="Final distance over seeds (bar: median)")
    return save(fig, out_dir, "toy_routing_final_distance")


def collapse_positions(arrays: dict, settings: dict, seed: int, out_dir) -> list:
    """Expert positions over training, light to dark; dashed circles: the optimal positions."""
    use_style()
    optima = np.array(settings["expert_optima"])
    variants = [(Arm.of(m), wd) for m in settings["methods"] for wd in settings["weight_decays"]]
    fig, axes = plt.subplots(1, len(variants), figsize=(3.2 * len(variants), 3.3), squeeze=False)
    for ax, (arm, wd) in zip(axes[0], variants):
        positions = arrays[f"{arm.slug}/wd{wd:g}/positions"]
        for n in range(positions.shape[1]):
            color = EXPERT_COLORS[n % 8]
            ax.scatter(*optima[n], s=260, facecolors="none", edgecolors=color, linestyles="--", lw=1.5)
            shades = np.linspace(0.15, 1.0, len(positions))
            ax.scatter(positions[:, n, 0], positions[:, n, 1], color=color, alpha=shades, s=10, edgecolors="none")
            ax.scatter(*positions[-1, n], color=color, s=40, edgecolors="black", lw=0.6, zorder=5)
        lim = max(1.5, np.abs(positions).max() * 1.1)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=f"{label(arm.router)}, wd={wd:g}")
    fig.suptitle(f"Expert positions over training (seed {seed}; light to dark); dashed: optimum", y=1.02)
    return save(fig, out_dir, "toy_collapse_positions")


def collapse_metrics(arrays: dict, settings: dict, out_dir) -> list:
    """Mean pairwise expert distance, drift from the optimum, router norm and routing accuracy against steps:
    the mean over seeds (line) and their range (band)."""
    use_style()
    curves = {"pairwise_distance": "pairwise distance", "drift": "drift from optimum",
              "router_norm": "router weight norm", "routing_accuracy": "routing accuracy"}
    palette = sns.color_palette("deep")
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2))
    variants = [(Arm.of(m), wd) for m in settings["methods"] for wd in settings["weight_decays"]]
    for ax, (key, title) in zip(axes, curves.items()):
        for i, (arm, wd) in enumerate(variants):
            prefix = f"{arm.slug}/wd{wd:g}"
            steps = arrays[f"{prefix}/step"]
            ax.plot(steps, arrays[f"{prefix}/{key}/mean"], color=palette[i], label=f"{label(arm.router)}, wd={wd:g}")
            ax.fill_between(steps, arrays[f"{prefix}/{key}/min"], arrays[f"{prefix}/{key}/max"], color=palette[i],
                            alpha=0.2, lw=0)
        ax.set(title=title, xlabel="step")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Expert collapse metrics over {len(settings['seeds'])} seeds (line: mean; band: min-max)", y=1.03)
    return save(fig, out_dir, "toy_collapse_metrics")


def dilemma_weights(arrays: dict, settings: dict, seed: int, out_dir) -> list:
    """Loss over the weights of experts A and B, the weights standard routing can reach, and the
    weight paths of each method."""
    use_style()
    experts, target = np.array(settings["experts"]), np.array(settings["target"])
    grid = np.linspace(-0.2, 1.4, 161)
    wa, wb = np.meshgrid(grid, grid)
    outputs = wa[..., None] * experts[0] + wb[..., None] * experts[1]
    loss = ((outputs - target) ** 2).sum(-1)
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    contour = ax.contourf(wa, wb, np.log10(loss + 1e-4), levels=20, cmap=sns.color_palette("mako_r", as_cmap=True))
    fig.colorbar(contour, ax=ax, label="log10 loss")
    k = max(m["k"] for m in settings["methods"])  # the landscape of the largest K its methods use
    if k == 2:
        reachable = standard_weight_grid(len(experts), 2, resolution=200)
        ax.scatter(reachable[:, 0], reachable[:, 1], s=4, color="#f4a261", alpha=0.5, edgecolors="none",
                   label="reachable with weights = probabilities")
    palette = sns.color_palette("bright")
    for i, arm in enumerate(map(Arm.of, settings["methods"])):
        weights = arrays[f"{arm.slug}/weights"]
        ax.plot(weights[:, 0], weights[:, 1], color=palette[i], lw=2.5 - 0.4 * i, ls=["-", "--", ":", "-."][i % 4],
                label=label(arm.router))
        ax.scatter(*weights[-1, :2], color=palette[i], s=40, edgecolors="black", zorder=5)
    best = best_subset_fit(experts, target, k)
    optimum = np.zeros(len(experts))
    optimum[best["subset"]] = best["weights"]
    ax.scatter(*optimum[:2], marker="*", s=260, color="#e8322b", zorder=6, label="optimum")
    ax.set(xlabel="weight of expert A", ylabel="weight of expert B", aspect="equal",
           title=f"Expert weighting dilemma (seed {seed})")
    ax.legend(fontsize=7, loc="upper right")
    return save(fig, out_dir, "toy_dilemma_weights")


def barrier_landscape(arrays: dict, shown: dict, settings: dict, seed: int, out_dir) -> list:
    """Left: the loss along the blend of A and B, and RPO's expected loss. Right: the routing
    probability of B over training per method: the mean over seeds, their range, and the shown seed."""
    use_style()
    t, path_loss = arrays["interpolation/t"], arrays["interpolation/loss"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(t, path_loss, lw=2, label="gradient routing: L((1-p) e_A + p e_B)")
    left.plot(t, (1 - t) * path_loss[0] + t * path_loss[-1], lw=2, ls="--", label="RPO: (1-p) L(A) + p L(B)")
    left.axvline(settings["initial_prob_b"], color="grey", lw=1, ls=":", label="initial p(B)")
    left.set(xlabel="routing probability of expert B", ylabel="loss", title="Loss along the path from A to B")
    left.legend(fontsize=7)
    palette = sns.color_palette("deep")
    for i, method in enumerate(settings["methods"]):
        key = f"{Arm.of(method).slug}/prob_b"
        steps = np.arange(len(arrays[f"{key}/mean"]))
        right.fill_between(steps, arrays[f"{key}/min"], arrays[f"{key}/max"], color=palette[i], alpha=0.15, lw=0)
        right.plot(steps, arrays[f"{key}/mean"], color=palette[i], lw=2,
                   label=f"{label(method['router'])} (K={method['k']}): mean")
        right.plot(steps, shown[key], color=palette[i], lw=1, ls=":", label=f"seed {seed}")
    right.set(xlabel="training step", ylabel="p(B)", ylim=(-0.02, 1.02),
              title=f"Routing probability of B ({len(settings['seeds'])} seeds; band: min-max)")
    right.legend(fontsize=7)
    return save(fig, out_dir, "toy_barrier_landscape")


def toy_run(records) -> tuple[dict, dict]:
    """The saved arrays of a toy experiment's one job (its record's .npz) and its settings."""
    record = Path(records[0])
    path = record.with_suffix(".npz")
    if not path.is_file():
        raise FileNotFoundError(f"missing result arrays: {path}")
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    return arrays, read_json(record)["settings"]


def shown_run(arrays: dict, seed: int) -> dict:
    """The full series of the seed the figures draw (saved as "seed{N}/..."), keyed without the prefix."""
    prefix = f"seed{seed}/"
    shown = {key.removeprefix(prefix): value for key, value in arrays.items() if key.startswith(prefix)}
    if not shown:
        raise ValueError(f"report.trajectory_seed {seed} is not among the toy's seeds (its arrays have no {prefix})")
    return shown


def draw_routing(experiment, inputs) -> list[Path]:
    arrays, settings = toy_run(inputs.runs)
    seed = inputs.view["trajectory_seed"]
    return (routing_trajectories(shown_run(arrays, seed), settings, seed, inputs.out_dir)
            + routing_final_distance(pd.read_csv(inputs.tables["toy_routing_seeds"]),
                                     pd.read_csv(inputs.tables["toy_routing_optima"]), inputs.out_dir))


def draw_collapse(experiment, inputs) -> list[Path]:
    arrays, settings = toy_run(inputs.runs)
    seed = inputs.view["trajectory_seed"]
    return (collapse_positions(shown_run(arrays, seed), settings, seed, inputs.out_dir)
            + collapse_metrics(arrays, settings, inputs.out_dir))


def draw_dilemma(experiment, inputs) -> list[Path]:
    arrays, settings = toy_run(inputs.runs)
    seed = inputs.view["trajectory_seed"]
    return dilemma_weights(shown_run(arrays, seed), settings, seed, inputs.out_dir)


def draw_barrier(experiment, inputs) -> list[Path]:
    arrays, settings = toy_run(inputs.runs)
    seed = inputs.view["trajectory_seed"]
    return barrier_landscape(arrays, shown_run(arrays, seed), settings, seed, inputs.out_dir)
