"""Switch Transformer routing (Fedus et al., 2021): softmax top-k (top-1 in the paper) with the
load-balancing loss alpha * E * sum_i f_i P_i and an optional expert capacity."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from moe_rpo.routers.base import RouterOutput, count_experts
from moe_rpo.routers.jitter import Jitter
from moe_rpo.routers.options import Option


def admitted(experts: torch.Tensor, num_experts: int, capacity: int) -> torch.Tensor:
    """[N, k] bool: which selections fit in their expert's `capacity` slots when slots are filled in token
    order, first choices of all tokens before second choices (Mesh-TF / GShard order)."""
    N, k = experts.shape
    onehot = F.one_hot(experts.T.reshape(-1), num_experts)  # slot-major: all first choices, then all second, ...
    position = (onehot.cumsum(0) * onehot).sum(-1)  # 1-based place of each selection in its expert's queue
    return (position <= capacity).view(k, N).T


def dropped_fraction(out: RouterOutput) -> torch.Tensor:
    """Share of the selections that overflowed their expert's capacity (0 without a capacity)."""
    return 1 - out.active().float().mean()


class Switch(Jitter):
    """Weights are the raw probabilities; f_i = fraction of token selections sent to expert i (before
    capacity drops), P_i = mean router probability of expert i; the loss is minimal (alpha) under uniform
    routing. Optional Switch-style input jitter (epsilon, default off).

    capacity_factor: None (default) = unlimited; else every expert takes at most
    C = ceil(capacity_factor * N * k / E) of the batch's N * k selections, admitted in token order; the
    overflow gets mask False and weight 0, so a token with no admitted selection passes through the
    residual (see `dropped_fraction`)."""

    options = {**Jitter.options,
               "balance_coef": Option("alpha of the load-balancing loss alpha * E * sum_i f_i P_i", minimum=0),
               "capacity_factor": Option("each expert takes at most ceil(cf * N * k / E) selections, in token "
                                         "order; the overflow is dropped (null: unlimited)", exclusive_minimum=0)}

    def __init__(self, dim: int, num_experts: int, k: int, balance_coef: float = 0.01, epsilon: float = 0.0,
                 init_std: float = 0.01, capacity_factor: float | None = None):
        super().__init__(dim, num_experts, k, epsilon=epsilon, init_std=init_std)
        if capacity_factor is not None and capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be positive or None, got {capacity_factor}")
        self.balance_coef, self.capacity_factor = balance_coef, capacity_factor

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        return self.route(self.route_logits(x))

    def route(self, logits: torch.Tensor) -> RouterOutput:
        probs = torch.softmax(logits, dim=-1)
        weights, experts = probs.topk(self.k, dim=-1)
        fraction = count_experts(experts, self.num_experts) / experts.numel()
        aux = {"balance": self.balance_coef * self.num_experts * (fraction.detach() * probs.mean(0)).sum()}
        mask = None
        if self.capacity_factor is not None:
            capacity = math.ceil(self.capacity_factor * experts.numel() / self.num_experts)
            mask = admitted(experts, self.num_experts, capacity)
            weights = weights * mask
        return RouterOutput(experts=experts, weights=weights, probs=probs, aux_losses=aux, mask=mask)
