"""Shared pieces of the toys whose experts are fixed 2-D vectors and whose router sees a constant input."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from moe_rpo.routers import Router, RouterOutput, build_router
from moe_rpo.training.step import phase_at, train_step


def make_router(spec: dict, num_experts: int, k: int, initial_logits=None) -> Router:
    """A router over `num_experts` experts fed the constant feature x = [1] (and token id 0: every
    sample is the same token), so that its gate weights are free logits; `initial_logits` optionally
    sets them."""
    router = build_router(spec, dim=1, num_experts=num_experts, k=k)
    router.fit_token_counts(torch.ones(1))  # the only token is id 0
    if initial_logits is not None:
        with torch.no_grad():
            router.gate.weight.copy_(torch.as_tensor(initial_logits, dtype=torch.float32)[:, None])
    return router


def mix(out: RouterOutput, expert_vectors: torch.Tensor) -> torch.Tensor:
    """MoE output [N, D] = sum over the selected experts of weight * expert vector."""
    return (out.weights[..., None] * expert_vectors[out.experts]).sum(1)


def dense_weights(out: RouterOutput, num_experts: int) -> torch.Tensor:
    """The selected weights scattered into [N, num_experts] (zero for unselected experts)."""
    return torch.zeros(out.weights.shape[0], num_experts).scatter(1, out.experts, out.weights)


@torch.no_grad()
def greedy_route(router: Router) -> RouterOutput:
    """The router's deterministic decision (evaluation mode) for the constant input."""
    router.eval()
    return router(torch.ones(1, 1), torch.zeros(1, dtype=torch.long))


def train(router: Router, settings: dict, task_loss: Callable[[RouterOutput], torch.Tensor],
          record: Callable[[], None]) -> None:
    """Train the router alone with Adam for settings["steps"] steps on a constant batch of
    settings["batch_size"] inputs; call `record` before training and after every step. A router with
    no parameters (hash, fixed random) keeps its decision: its trajectory stands still."""
    params = list(router.parameters())
    batch = torch.ones(settings["batch_size"], 1)
    record()
    if not params:
        for _ in range(settings["steps"]):
            record()
        return
    optimizer = torch.optim.Adam(params, lr=settings["lr"])
    for step in range(settings["steps"]):
        train_step(router, optimizer, phase_at(step, router.alternation), batch, task_loss, step=step,
                   token_ids=torch.zeros(len(batch), dtype=torch.long))
        record()


def as_numpy(rows: list[torch.Tensor]) -> np.ndarray:
    return torch.stack(rows).numpy()
