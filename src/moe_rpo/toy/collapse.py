"""Toy 2: expert collapse. 2-D linear regression with one input cluster per expert; cluster c has
its own regression target y = a_c . x, and expert n (a 2-D weight vector) starts at its optimum a_n.
Router (linear, on [x, 1]) and experts train jointly (standard) or by alternation (RPO)."""
from __future__ import annotations

import itertools

import numpy as np
import torch
from tqdm import tqdm

from moe_rpo.routers import build_router
from moe_rpo.training.step import phase_at, train_step


def sample_batch(settings: dict, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs [B, 2], their cluster ids [B] and regression targets [B]."""
    centers = torch.tensor(settings["cluster_centers"], dtype=torch.float32)
    optima = torch.tensor(settings["expert_optima"], dtype=torch.float32)
    cluster = torch.randint(len(centers), (settings["batch_size"],), generator=generator)
    x = centers[cluster] + settings["cluster_std"] * torch.randn(settings["batch_size"], 2, generator=generator)
    y = (optima[cluster] * x).sum(-1) + settings["noise_std"] * torch.randn(settings["batch_size"], generator=generator)
    return x, cluster, y


def with_bias(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(len(x), 1)], dim=1)


def predict(out, experts: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum over selected experts n of weight_n * (w_n . x)."""
    return (out.weights * (experts[out.experts] * x[:, None, :]).sum(-1)).sum(-1)


def mean_pairwise_distance(points: np.ndarray) -> float:
    return float(np.mean([np.linalg.norm(points[i] - points[j]) for i, j in itertools.combinations(range(len(points)), 2)]))


def train_variant(spec: dict, weight_decay: float, settings: dict, seed: int) -> dict[str, np.ndarray]:
    """Train router and experts; log expert positions and metrics every `log_every` steps."""
    torch.manual_seed(seed)
    optima = np.array(settings["expert_optima"], dtype=np.float32)
    experts = torch.nn.Parameter(torch.tensor(optima))
    router = build_router(spec, dim=3, num_experts=len(optima), k=settings["k"])
    optimizer = torch.optim.AdamW([
        {"params": router.parameters(), "weight_decay": weight_decay},
        {"params": [experts], "weight_decay": 0.0},
    ], lr=settings["lr"])
    data_rng = torch.Generator().manual_seed(seed)
    eval_x, eval_cluster, eval_y = sample_batch({**settings, "batch_size": settings["eval_size"]},
                                                torch.Generator().manual_seed(10_000 + seed))
    log = {key: [] for key in ("step", "positions", "pairwise_distance", "drift", "router_norm", "eval_loss",
                               "routing_accuracy")}

    def record(step):
        router.eval()
        with torch.no_grad():
            out = router(with_bias(eval_x))
            loss = ((predict(out, experts, eval_x) - eval_y) ** 2).mean().item()
        positions = experts.detach().numpy().copy()
        log["step"].append(step)
        log["positions"].append(positions)
        log["pairwise_distance"].append(mean_pairwise_distance(positions))
        log["drift"].append(float(np.linalg.norm(positions - optima, axis=1).mean()))
        log["router_norm"].append(float(router.gate.weight.detach().norm()))
        log["eval_loss"].append(loss)
        log["routing_accuracy"].append(float((out.experts[:, 0] == eval_cluster).float().mean()))

    record(0)
    for step in range(settings["steps"]):
        x, _, y = sample_batch(settings, data_rng)
        train_step(router, optimizer, phase_at(step, router.alternation), with_bias(x),
                   lambda out: (predict(out, experts, x) - y) ** 2, other_params=[experts], step=step)
        if (step + 1) % settings["log_every"] == 0:
            record(step + 1)
    return {key: np.array(values) for key, values in log.items()}


def run(settings: dict, seed: int) -> tuple[dict[str, np.ndarray], list[dict]]:
    arrays, records = {}, []
    runs = [(name, wd) for name in settings["methods"] for wd in settings["weight_decays"]]
    for name, wd in tqdm(runs, desc=f"expert collapse seed {seed}", mininterval=5):
        log = train_variant(settings["routers"][name], wd, settings, seed)
        for key, values in log.items():
            arrays[f"{name}/wd{wd:g}/{key}"] = values
        records.append({
            "method": name, "weight_decay": wd, "seed": seed,
            "initial_pairwise_distance": log["pairwise_distance"][0],
            "final_pairwise_distance": log["pairwise_distance"][-1],
            "pairwise_distance_ratio": log["pairwise_distance"][-1] / log["pairwise_distance"][0],
            "final_drift": log["drift"][-1],
            "final_router_norm": log["router_norm"][-1],
            "max_router_norm": float(log["router_norm"].max()),
            "final_eval_loss": log["eval_loss"][-1],
            "final_routing_accuracy": log["routing_accuracy"][-1],
        })
    return arrays, records
