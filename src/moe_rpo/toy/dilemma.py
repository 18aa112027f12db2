"""Toy 3: the expert weighting dilemma. The target needs much of expert A and little of expert B
(target = 1.0 e_A + 0.2 e_B by default). With weights = router probabilities one number decides both
whether an expert is chosen and how much it contributes, so the weights stay on the probability
simplex; RPO's separate weight policy is free. Only the router trains."""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from moe_rpo.toy.fixed_experts import as_numpy, dense_weights, greedy_route, make_router, mix, train
from moe_rpo.toy.optimum import best_standard_reachable, best_subset_fit


def train_router(spec: dict, settings: dict, seed: int) -> np.ndarray:
    """Greedy dense expert weights after every step, [steps + 1, E]."""
    torch.manual_seed(seed)
    experts = torch.tensor(settings["experts"], dtype=torch.float32)
    target = torch.tensor(settings["target"], dtype=torch.float32)
    router = make_router(spec, len(experts), settings["k"])
    weights = []
    train(router, settings, lambda out: ((mix(out, experts) - target) ** 2).sum(-1),
          lambda: weights.append(dense_weights(greedy_route(router), len(experts))[0]))
    return as_numpy(weights)


def run(settings: dict, seed: int) -> tuple[dict[str, np.ndarray], list[dict]]:
    experts, target = np.array(settings["experts"]), np.array(settings["target"])
    optimum = best_subset_fit(experts, target, settings["k"])
    reachable = best_standard_reachable(experts, target, settings["k"])
    arrays, records = {}, []
    for name in tqdm(settings["methods"], desc=f"weighting dilemma seed {seed}", mininterval=5):
        weights = train_router(settings["routers"][name], settings, seed)
        arrays[f"{name}/weights"] = weights
        distance = float(np.linalg.norm(weights[-1] @ experts - target))
        records.append({"method": name, "seed": seed, "final_distance": distance,
                        **{f"final_weight_{i}": float(w) for i, w in enumerate(weights[-1])},
                        "optimum_distance": optimum["distance"],
                        "standard_reachable_distance": reachable["distance"]})
    return arrays, records
