"""Switch Transformer routing (Fedus et al., 2021): softmax top-k (top-1 in the paper) with the
load-balancing loss alpha * E * sum_i f_i P_i."""
from __future__ import annotations

import torch

from moe_rpo.routers.base import RouterOutput
from moe_rpo.routers.jitter import Jitter


class Switch(Jitter):
    """Weights are the raw probabilities; f_i = fraction of token selections sent to expert i,
    P_i = mean router probability of expert i; the loss is minimal (alpha) under uniform routing.
    Optional Switch-style input jitter (epsilon, default off)."""

    def __init__(self, dim: int, num_experts: int, k: int, balance_coef: float = 0.01, epsilon: float = 0.0,
                 init_std: float = 0.01):
        super().__init__(dim, num_experts, k, epsilon=epsilon, init_std=init_std)
        self.balance_coef = balance_coef

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        out = super().forward(x, token_ids)
        fraction = torch.bincount(out.experts.reshape(-1), minlength=self.num_experts) / out.experts.numel()
        balance = self.balance_coef * self.num_experts * (fraction.detach() * out.probs.mean(0)).sum()
        out.aux_losses["balance"] = balance
        return out
