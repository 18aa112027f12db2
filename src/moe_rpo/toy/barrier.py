"""Toy 4: the monotonicity barrier. Two fixed experts feed a frozen non-linear readout
F(z) = sin(frequency * z) (any non-linear layer after the MoE plays this role); the target is
F(e_B), so expert B alone is optimal, expert A alone is nearly as good, and their blends are bad.
Gradient routing moves along the blend (1 - p) e_A + p e_B and stops at the first local minimum;
RPO optimises E_S[L] = (1 - p) L(A) + p L(B), which is linear, hence monotone, in p."""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from moe_rpo.toy.fixed_experts import dense_weights, greedy, make_routers, mix, train
from moe_rpo.toy.seeds import over_seeds, shown
from moe_rpo.toy.settings import BarrierSettings


def readout_loss(z: torch.Tensor, settings: BarrierSettings) -> torch.Tensor:
    """Per-sample loss ||F(z) - F(e_B)||^2 with F(z) = sin(frequency * z)."""
    f = settings.frequency
    target = torch.sin(f * torch.tensor(settings.experts[1], dtype=torch.float32))
    return ((torch.sin(f * z) - target) ** 2).sum(-1)


def interpolation_loss(settings: BarrierSettings, points: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Loss along the blend z(t) = (1 - t) e_A + t e_B, t in [0, 1]."""
    e_a, e_b = (torch.tensor(e, dtype=torch.float32) for e in settings.experts)
    t = torch.linspace(0, 1, points)
    return t.numpy(), readout_loss((1 - t)[:, None] * e_a + t[:, None] * e_b, settings).numpy()


def barrier_height(settings: BarrierSettings) -> float:
    """How far the loss rises on the way from A to B: max_t L(t) - L(0)."""
    _, loss = interpolation_loss(settings)
    return float(loss.max() - loss[0])


def train_router(spec: dict, k: int, settings: BarrierSettings, seeds: list[int]) -> dict[str, np.ndarray]:
    """Per seed and step: the greedy routing probability of B, the dense weights and the loss, [S, steps + 1, ...]."""
    experts = torch.tensor(settings.experts, dtype=torch.float32)
    logit_b = float(np.log(settings.initial_prob_b / (1 - settings.initial_prob_b)))
    routers = make_routers(spec, seeds, 2, k, initial_logits=[0.0, logit_b])
    log = []

    def read(out):
        return torch.cat([out.probs[0, 1:2], dense_weights(out, 2)[0], readout_loss(mix(out, experts), settings)])

    train(routers, settings, lambda out: readout_loss(mix(out, experts), settings),
          lambda: log.append(greedy(routers, read)))
    log = torch.stack(log, 1).numpy()
    return {"prob_b": log[..., 0], "weights": log[..., 1:3], "loss": log[..., 3]}


def run(settings: dict) -> tuple[dict[str, np.ndarray], list[dict]]:
    job = BarrierSettings.of(settings)
    seeds = job.seeds
    t, path_loss = interpolation_loss(job)
    arrays, records = {"interpolation/t": t, "interpolation/loss": path_loss}, []
    for arm in tqdm(job.methods, desc=f"monotonicity barrier, {len(seeds)} seeds", mininterval=5):
        name, k = arm
        log = train_router(job.routers[name], k, job, seeds)
        arrays |= over_seeds(f"{arm.slug}/prob_b", log["prob_b"])
        for key, values in log.items():
            arrays |= shown(job, f"{arm.slug}/{key}", values)
        for s, seed in enumerate(seeds):
            final = log["weights"][s, -1]
            records.append({"method": name, "k": k, "seed": seed, "steps": job.steps,
                            "final_prob_b": float(log["prob_b"][s, -1]), "final_loss": float(log["loss"][s, -1]),
                            "routes_to_b": bool(final[1] > final[0]),
                            "barrier_height": barrier_height(job)})
    return arrays, records
