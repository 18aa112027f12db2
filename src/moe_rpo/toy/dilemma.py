"""Toy 3: the expert weighting dilemma. The target needs much of expert A and little of expert B
(target = 1.0 e_A + 0.2 e_B by default). With weights = router probabilities one number decides both
whether an expert is chosen and how much it contributes, so the weights stay on the probability
simplex; RPO's separate weight policy is free. Only the router trains."""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from moe_rpo.toy.fixed_experts import dense_weights, greedy, make_routers, mix, train
from moe_rpo.toy.optimum import best_standard_reachable, best_subset_fit
from moe_rpo.toy.seeds import shown
from moe_rpo.toy.settings import FixedExpertsSettings
from moe_rpo.values import Arm


def train_router(spec: dict, k: int, settings: FixedExpertsSettings, seeds: list[int]) -> np.ndarray:
    """Greedy dense expert weights after every step, [S, steps + 1, E]."""
    experts = torch.tensor(settings.experts, dtype=torch.float32)
    target = torch.tensor(settings.target, dtype=torch.float32)
    routers = make_routers(spec, seeds, len(experts), k)
    weights = []
    train(routers, settings, lambda out: ((mix(out, experts) - target) ** 2).sum(-1),
          lambda: weights.append(greedy(routers, lambda out: dense_weights(out, len(experts))[0])))
    return torch.stack(weights, 1).numpy()


def run(settings: dict) -> tuple[dict[str, np.ndarray], list[dict]]:
    job = FixedExpertsSettings.of(settings)
    experts, target, seeds = np.array(job.experts), np.array(job.target), job.seeds
    ks = {arm.k for arm in job.methods}
    optimum = {k: best_subset_fit(experts, target, k) for k in ks}
    reachable = {k: best_standard_reachable(experts, target, k) for k in ks}
    arrays, records = {}, []
    for name, k in tqdm(job.methods, desc=f"weighting dilemma, {len(seeds)} seeds", mininterval=5):
        weights = train_router(job.routers[name], k, job, seeds)
        arrays |= shown(job, f"{Arm(name, k).slug}/weights", weights)
        for seed, path in zip(seeds, weights):
            records.append({"method": name, "k": k, "seed": seed, "steps": job.steps,
                            "final_distance": float(np.linalg.norm(path[-1] @ experts - target)),
                            **{f"final_weight_{i}": float(w) for i, w in enumerate(path[-1])},
                            "optimum_distance": optimum[k]["distance"],
                            "standard_reachable_distance": reachable[k]["distance"]})
    return arrays, records
