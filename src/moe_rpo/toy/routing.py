"""Toy 1: routing trajectories. Eight fixed 2-D experts, one target; only the router trains.
The loss is the squared distance of the MoE output to the target."""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from moe_rpo.toy.fixed_experts import greedy, make_routers, mix, train
from moe_rpo.toy.optimum import best_standard_reachable, best_subset_fit
from moe_rpo.toy.seeds import shown
from moe_rpo.toy.settings import FixedExpertsSettings
from moe_rpo.values import Arm


def optima(settings: FixedExpertsSettings) -> dict[int, dict]:
    """Per k: the exact optimum (free weights) and the best point under weights = probabilities."""
    experts, target = np.array(settings.experts), np.array(settings.target)
    ks = sorted({arm.k for arm in settings.methods})
    return {k: {"optimum": best_subset_fit(experts, target, k),
                "standard_reachable": best_standard_reachable(experts, target, k)} for k in ks}


def train_router(spec: dict, k: int, settings: FixedExpertsSettings, seeds: list[int]) -> np.ndarray:
    """Train one router per seed; return the greedy MoE output after every step, [S, steps + 1, 2]."""
    experts = torch.tensor(settings.experts, dtype=torch.float32)
    target = torch.tensor(settings.target, dtype=torch.float32)
    routers = make_routers(spec, seeds, len(experts), k)
    outputs = []
    train(routers, settings, lambda out: ((mix(out, experts) - target) ** 2).sum(-1),
          lambda: outputs.append(greedy(routers, lambda out: mix(out, experts)[0])))
    return torch.stack(outputs, 1).numpy()


def run(settings: dict) -> tuple[dict[str, np.ndarray], list[dict]]:
    job = FixedExpertsSettings.of(settings)
    target, seeds = np.array(job.target), job.seeds
    best = optima(job)
    arrays, records = {}, []
    for name, k in tqdm(job.methods, desc=f"toy routing, {len(seeds)} seeds", mininterval=5):
        trajectories = train_router(job.routers[name], k, job, seeds)
        arrays |= shown(job, Arm(name, k).slug, trajectories)
        for seed, trajectory in zip(seeds, trajectories):
            distance = float(np.linalg.norm(trajectory[-1] - target))
            records.append({
                "method": name, "k": k, "seed": seed, "steps": job.steps, "final_distance": distance,
                "gap_to_optimum": distance - best[k]["optimum"]["distance"],
                "gap_to_standard_reachable": distance - best[k]["standard_reachable"]["distance"],
                "optimum_distance": best[k]["optimum"]["distance"],
                "standard_reachable_distance": best[k]["standard_reachable"]["distance"],
            })
    return arrays, records
