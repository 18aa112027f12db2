"""Shared pieces of the toys whose experts are fixed 2-D vectors and whose router sees a constant input."""
from __future__ import annotations

from collections.abc import Callable

import torch

from moe_rpo.routers import Router, RouterOutput
from moe_rpo.toy.seeds import SeedRouters
from moe_rpo.toy.settings import ToySettings
from moe_rpo.training.step import phase_at
from moe_rpo.values import TOY_DIM

ONE = torch.ones(1, TOY_DIM)  # the constant feature x = [1]
TOKEN = torch.zeros(1, dtype=torch.long)  # every sample is the same token, id 0


def make_routers(spec: dict, seeds: list[int], num_experts: int, k: int, initial_logits=None,
                 batched: bool | None = None) -> SeedRouters:
    """One router per seed over `num_experts` experts, fed the constant feature, so that its gate weights are
    free logits; `initial_logits` optionally sets them. `batched`: as SeedRouters takes it."""
    def prepare(router: Router) -> None:
        router.fit_token_counts(torch.ones(1))  # the only token is id 0
        if initial_logits is not None:
            with torch.no_grad():
                router.gate.weight.copy_(torch.as_tensor(initial_logits, dtype=torch.float32)[:, None])

    return SeedRouters(spec, seeds, TOY_DIM, num_experts, k, prepare, batched)


def mix(out: RouterOutput, expert_vectors: torch.Tensor) -> torch.Tensor:
    """MoE output [N, D] = sum over the selected experts of weight * expert vector."""
    return (out.weights[..., None] * expert_vectors[out.experts]).sum(1)


def dense_weights(out: RouterOutput, num_experts: int) -> torch.Tensor:
    """The selected weights scattered into [N, num_experts] (zero for unselected experts)."""
    return torch.zeros(out.weights.shape[0], num_experts).scatter(1, out.experts, out.weights)


@torch.no_grad()
def greedy(routers: SeedRouters, read: Callable[[RouterOutput], torch.Tensor]) -> torch.Tensor:
    """read(decision) of every seed's router, [S, ...]: its deterministic decision (evaluation mode) for the
    constant input."""
    routers.train(False)
    return routers.map(lambda router: read(router(ONE, TOKEN)))


def train(routers: SeedRouters, settings: ToySettings, task_loss: Callable[[RouterOutput], torch.Tensor],
          record: Callable[[], None]) -> None:
    """Train the routers alone with Adam for settings.steps steps on a constant batch of settings.batch_size
    inputs; call `record` before training and after every step. A router with no parameters (hash, fixed random)
    keeps its decision: its trajectory stands still."""
    params = routers.parameters()
    batch, tokens = torch.ones(settings.batch_size, TOY_DIM), torch.zeros(settings.batch_size, dtype=torch.long)
    record()
    if not params:
        for _ in range(settings.steps):
            record()
        return
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    streams = routers.streams(len(batch))

    def routed_loss(router):
        out = router(batch, tokens)
        return out, task_loss(out)

    for step in range(settings.steps):
        routers.step(optimizer, phase_at(step, routers.alternation), routed_loss, streams.next(), step=step)
        record()
