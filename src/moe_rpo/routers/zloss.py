"""Router z-loss (Zoph et al., 2022, ST-MoE): Switch routing plus
z_loss = z_loss_coef * mean over tokens of logsumexp(logits)^2, which keeps the router logits small."""
from __future__ import annotations

import torch

from moe_rpo.routers.base import RouterOutput
from moe_rpo.routers.options import Option
from moe_rpo.routers.switch import Switch


class ZLoss(Switch):
    """Switch routing (top-k of softmax, raw-probability weights, balance loss, optional capacity) with the
    router z-loss. Defaults follow ST-MoE: z_loss_coef = 1e-3 next to a balance loss of 1e-2."""

    options = {**Switch.options,
               "z_loss_coef": Option("coefficient of the router z-loss mean(logsumexp(logits)^2)", minimum=0)}

    def __init__(self, dim: int, num_experts: int, k: int, z_loss_coef: float = 1e-3, balance_coef: float = 0.01,
                 epsilon: float = 0.0, init_std: float = 0.01, capacity_factor: float | None = None):
        super().__init__(dim, num_experts, k, balance_coef=balance_coef, epsilon=epsilon, init_std=init_std,
                         capacity_factor=capacity_factor)
        self.z_loss_coef = z_loss_coef

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        logits = self.route_logits(x).float()
        out = self.route(logits)
        out.aux_losses["z_loss"] = self.z_loss_coef * torch.logsumexp(logits, dim=-1).square().mean()
        return out
