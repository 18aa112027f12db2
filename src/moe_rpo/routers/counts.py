"""What a router's between-step state is updated from: counts over one optimizer step's outputs, summed over the
data-parallel ranks so that every rank makes the same update."""
from __future__ import annotations

import torch
from torch import distributed as dist

from moe_rpo.routers.base import RouterOutput, count_experts


def over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over the data-parallel ranks (itself in one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def expert_counts(outputs: list[RouterOutput], num_experts: int) -> torch.Tensor:
    """[E] float: the dispatched (token, expert) pairs per expert over every output of the step and every rank."""
    counts = sum(count_experts(out.experts, num_experts, out.active()) for out in outputs)
    return over_ranks(counts.double())
