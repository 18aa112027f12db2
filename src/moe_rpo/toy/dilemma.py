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


def train_router(spec: dict, settings: dict, seeds: list[int]) -> np.ndarray:
    """Greedy dense expert weights after every step, [S, steps + 1, E]."""
    experts = torch.tensor(settings["experts"], dtype=torch.float32)
    target = torch.tensor(settings["target"], dtype=torch.float32)
    routers = make_routers(spec, seeds, len(experts), settings["k"])
    weights = []
    train(routers, settings, lambda out: ((mix(out, experts) - target) ** 2).sum(-1),
          lambda: weights.append(greedy(routers, lambda out: dense_weights(out, len(experts))[0])))
    return torch.stack(weights, 1).numpy()


def run(settings: dict) -> tuple[dict[str, np.ndarray], list[dict]]:
    experts, target, seeds = np.array(settings["experts"]), np.array(settings["target"]), settings["seeds"]
    optimum = best_subset_fit(experts, target, settings["k"])
    reachable = best_standard_reachable(experts, target, settings["k"])
    arrays, records = {}, []
    for name in tqdm(settings["methods"], desc=f"weighting dilemma, {len(seeds)} seeds", mininterval=5):
        weights = train_router(settings["routers"][name], settings, seeds)
        arrays |= shown(settings, f"{name}/weights", weights)
        for seed, path in zip(seeds, weights):
            records.append({"method": name, "seed": seed, "steps": settings["steps"],
                            "final_distance": float(np.linalg.norm(path[-1] @ experts - target)),
                            **{f"final_weight_{i}": float(w) for i, w in enumerate(path[-1])},
                            "optimum_distance": optimum["distance"],
                            "standard_reachable_distance": reachable["distance"]})
    return arrays, records
