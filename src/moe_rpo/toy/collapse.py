"""Toy 2: expert collapse. 2-D linear regression with one input cluster per expert; cluster c has
its own regression target y = a_c . x, and expert n (a 2-D weight vector) starts at its optimum a_n.
Router (linear, on [x, 1]) and experts train jointly (standard) or by alternation (RPO)."""
from __future__ import annotations

import itertools

import numpy as np
import torch
from tqdm import tqdm

from moe_rpo.toy.seeds import CHUNK, SeedRouters, over_seeds, shown
from moe_rpo.toy.settings import CollapseSettings
from moe_rpo.training.step import phase_at
from moe_rpo.values import Arm


def sample_batch(settings: CollapseSettings, generator: torch.Generator, size: int) -> tuple[torch.Tensor, ...]:
    """`size` inputs [size, 2], their cluster ids [size] and regression targets [size]."""
    centers = torch.tensor(settings.cluster_centers, dtype=torch.float32)
    optima = torch.tensor(settings.expert_optima, dtype=torch.float32)
    cluster = torch.randint(len(centers), (size,), generator=generator)
    x = centers[cluster] + settings.cluster_std * torch.randn(size, 2, generator=generator)
    y = (optima[cluster] * x).sum(-1) + settings.noise_std * torch.randn(size, generator=generator)
    return x, cluster, y


class SeedData:
    """Every seed's training batches from its own generator, drawn CHUNK steps at a time: [S, batch, ...] a step."""

    def __init__(self, settings: CollapseSettings, seeds: list[int]):
        self.settings, self.step = settings, 0
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        i, batch = self.step % CHUNK, self.settings.batch_size
        if i == 0:
            drawn = [sample_batch(self.settings, g, CHUNK * batch) for g in self.generators]
            self.x = torch.stack([x for x, _, _ in drawn]).unflatten(1, (CHUNK, batch))
            self.y = torch.stack([y for _, _, y in drawn]).unflatten(1, (CHUNK, batch))
        self.step += 1
        return self.x[:, i], self.y[:, i]


def with_bias(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(*x.shape[:-1], 1)], dim=-1)


def predict(out, experts: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum over selected experts n of weight_n * (w_n . x)."""
    return (out.weights * (experts[out.experts] * x[:, None, :]).sum(-1)).sum(-1)


def mean_pairwise_distance(points: np.ndarray) -> np.ndarray:
    """[S, E, 2] -> [S]: each seed's mean distance over pairs of experts."""
    pairs = list(itertools.combinations(range(points.shape[1]), 2))
    return np.mean([np.linalg.norm(points[:, i] - points[:, j], axis=-1) for i, j in pairs], axis=0)


def train_variant(spec: dict, k: int, weight_decay: float, settings: CollapseSettings,
                  seeds: list[int]) -> dict[str, np.ndarray]:
    """Train router and experts of every seed; log expert positions and metrics every `log_every` steps,
    [S, logs, ...] each (steps: [logs])."""
    optima = torch.tensor(settings.expert_optima, dtype=torch.float32)
    experts = optima.expand(len(seeds), -1, -1).clone().requires_grad_()
    routers = SeedRouters(spec, seeds, 3, len(optima), k)
    optimizer = torch.optim.AdamW([{"params": routers.parameters(), "weight_decay": weight_decay},
                                   {"params": [experts], "weight_decay": 0.0}], lr=settings.lr)
    evaluation = [sample_batch(settings, torch.Generator().manual_seed(10_000 + seed), settings.eval_size)
                  for seed in seeds]
    eval_x, eval_cluster, eval_y = (torch.stack(part) for part in zip(*evaluation))
    log = {key: [] for key in ("step", "positions", "router_norm", "eval_loss", "routing_accuracy")}

    @torch.no_grad()
    def record(step):
        routers.train(False)

        def evaluate(router, experts, x, cluster, y):
            out = router(with_bias(x))
            return (((predict(out, experts, x) - y) ** 2).mean(),
                    (out.experts[:, 0] == cluster).float().mean())

        loss, accuracy = routers.map(evaluate, None, experts, eval_x, eval_cluster, eval_y)
        log["step"].append(step)
        log["positions"].append(experts.detach().numpy().copy())
        log["router_norm"].append(routers.parameter("gate.weight").detach().flatten(1).norm(dim=1).numpy())
        log["eval_loss"].append(loss.numpy())
        log["routing_accuracy"].append(accuracy.numpy())

    def routed_loss(router, experts, x, y):
        out = router(with_bias(x))
        return out, (predict(out, experts, x) - y) ** 2

    record(0)
    data, streams = SeedData(settings, seeds), routers.streams(settings.batch_size)
    for step in range(settings.steps):
        x, y = data.next()
        routers.step(optimizer, phase_at(step, routers.alternation), routed_loss, streams.next(), experts, x, y,
                     other_params=[experts], step=step)
        if (step + 1) % settings.log_every == 0:
            record(step + 1)
    arrays = {key: np.stack(values, axis=1) for key, values in log.items() if key != "step"}
    arrays["pairwise_distance"] = np.stack([mean_pairwise_distance(p) for p in np.moveaxis(arrays["positions"], 1, 0)], 1)
    arrays["drift"] = np.linalg.norm(arrays["positions"] - optima.numpy(), axis=-1).mean(-1)
    return {"step": np.array(log["step"]), **arrays}


CURVES = ("pairwise_distance", "drift", "router_norm", "routing_accuracy")  # drawn for every seed as a band


def run(settings: dict) -> tuple[dict[str, np.ndarray], list[dict]]:
    job = CollapseSettings.of(settings)
    seeds = job.seeds
    arrays, records = {}, []
    runs = [(name, k, wd) for name, k in job.methods for wd in job.weight_decays]
    for name, k, wd in tqdm(runs, desc=f"expert collapse, {len(seeds)} seeds", mininterval=5):
        log = train_variant(job.routers[name], k, wd, job, seeds)
        prefix = f"{Arm(name, k).slug}/wd{wd:g}"
        arrays[f"{prefix}/step"] = log["step"]
        for key in CURVES:
            arrays |= over_seeds(f"{prefix}/{key}", log[key])
        arrays |= shown(job, f"{prefix}/positions", log["positions"])
        for s, seed in enumerate(seeds):
            distance = log["pairwise_distance"][s]
            records.append({
                "method": name, "k": k, "weight_decay": wd, "seed": seed, "steps": job.steps,
                "initial_pairwise_distance": float(distance[0]),
                "final_pairwise_distance": float(distance[-1]),
                "pairwise_distance_ratio": float(distance[-1] / distance[0]),
                "final_drift": float(log["drift"][s, -1]),
                "final_router_norm": float(log["router_norm"][s, -1]),
                "max_router_norm": float(log["router_norm"][s].max()),
                "final_eval_loss": float(log["eval_loss"][s, -1]),
                "final_routing_accuracy": float(log["routing_accuracy"][s, -1]),
            })
    return arrays, records
