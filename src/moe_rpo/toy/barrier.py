"""Toy 4: the monotonicity barrier. Two fixed experts feed a frozen non-linear readout
F(z) = sin(frequency * z) (any non-linear layer after the MoE plays this role); the target is
F(e_B), so expert B alone is optimal, expert A alone is nearly as good, and their blends are bad.
Gradient routing moves along the blend (1 - p) e_A + p e_B and stops at the first local minimum;
RPO optimises E_S[L] = (1 - p) L(A) + p L(B), which is linear, hence monotone, in p."""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from moe_rpo.config import Arm
from moe_rpo.toy.fixed_experts import dense_weights, greedy_route, make_router, mix, train


def readout_loss(z: torch.Tensor, settings: dict) -> torch.Tensor:
    """Per-sample loss ||F(z) - F(e_B)||^2 with F(z) = sin(frequency * z)."""
    f = settings["frequency"]
    target = torch.sin(f * torch.tensor(settings["experts"][1], dtype=torch.float32))
    return ((torch.sin(f * z) - target) ** 2).sum(-1)


def interpolation_loss(settings: dict, points: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Loss along the blend z(t) = (1 - t) e_A + t e_B, t in [0, 1]."""
    e_a, e_b = (torch.tensor(e, dtype=torch.float32) for e in settings["experts"])
    t = torch.linspace(0, 1, points)
    return t.numpy(), readout_loss((1 - t)[:, None] * e_a + t[:, None] * e_b, settings).numpy()


def barrier_height(settings: dict) -> float:
    """How far the loss rises on the way from A to B: max_t L(t) - L(0)."""
    _, loss = interpolation_loss(settings)
    return float(loss.max() - loss[0])


def train_router(spec: dict, k: int, settings: dict, seed: int) -> dict[str, np.ndarray]:
    torch.manual_seed(seed)
    experts = torch.tensor(settings["experts"], dtype=torch.float32)
    router = make_router(spec, 2, k, initial_logits=[0.0, float(np.log(settings["initial_prob_b"] / (1 - settings["initial_prob_b"])))])
    prob_b, weights, loss = [], [], []

    def record():
        out = greedy_route(router)
        prob_b.append(out.probs[0, 1].item())
        weights.append(dense_weights(out, 2)[0].numpy())
        loss.append(readout_loss(mix(out, experts), settings).item())

    train(router, settings, lambda out: readout_loss(mix(out, experts), settings), record)
    return {"prob_b": np.array(prob_b), "weights": np.array(weights), "loss": np.array(loss)}


def run(settings: dict, seed: int) -> tuple[dict[str, np.ndarray], list[dict]]:
    t, path_loss = interpolation_loss(settings)
    arrays, records = {"interpolation/t": t, "interpolation/loss": path_loss}, []
    for method in tqdm(settings["methods"], desc=f"monotonicity barrier seed {seed}", mininterval=5):
        name, k = method["router"], method["k"]
        log = train_router(settings["routers"][name], k, settings, seed)
        for key, values in log.items():
            arrays[f"{Arm(name, k).slug}/{key}"] = values
        records.append({"method": name, "k": k, "seed": seed, "final_prob_b": float(log["prob_b"][-1]),
                        "final_loss": float(log["loss"][-1]), "routes_to_b": bool(log["weights"][-1][1] > log["weights"][-1][0]),
                        "barrier_height": barrier_height(settings)})
    return arrays, records
