"""ReMoE: ReLU routing (Wang et al., ICLR 2025, arXiv 2412.14711; thu-ml/ReMoE, megatron/core/transformer/moe/
router.py): gates R(x) = ReLU(x W), each token uses the experts whose gate is positive (0..E of them), weighted
by the gate. Sparsity comes from an L1 penalty weighted by the load, Switch style:
    l1 = lambda * sum_e f_e * mean over tokens of R_e(x),   f_e = E / (k N) * #{tokens with R_e(x) > 0},
whose coefficient adapts after every optimizer step towards the target sparsity 1 - k/E: lambda <- lambda * alpha
while the share of zero gates is below the target, lambda <- lambda / alpha otherwise. Defaults from the reference
code: lambda starts at 1e-8, alpha = 1.2. So k sets the average, not the exact, number of experts per token, and
a short run spends its first steps far from it (the coefficient needs ~100 steps to grow from 1e-8 to ~1)."""
from __future__ import annotations

import torch
from torch import nn

from moe_rpo.routers.base import Router, RouterOutput
from moe_rpo.routers.counts import over_ranks
from moe_rpo.routers.options import Option


class ReMoE(Router):
    """experts [N, E] = arange(E), mask = R(x) > 0, weights = R(x); probs = R(x) normalised per token (uniform
    for a token with no positive gate, which passes through the residual)."""
    slot_per_expert = True

    options = {"l1_coef_init": Option("initial coefficient lambda of the L1 penalty", exclusive_minimum=0),
               "l1_coef_multiplier": Option("alpha: lambda is multiplied or divided by it after each step",
                                            exclusive_minimum=1),
               "init_std": Option("std of the gate's normal initialisation", minimum=0)}

    def __init__(self, dim: int, num_experts: int, k: int, l1_coef_init: float = 1e-8,
                 l1_coef_multiplier: float = 1.2, init_std: float = 0.01):
        super().__init__(dim, num_experts, k)
        if l1_coef_init <= 0 or l1_coef_multiplier <= 1:
            raise ValueError(f"ReMoE needs l1_coef_init > 0 and l1_coef_multiplier > 1, got {l1_coef_init}, "
                             f"{l1_coef_multiplier}")
        self.multiplier = l1_coef_multiplier
        self.target_sparsity = 1 - k / num_experts
        self.gate = nn.Linear(dim, num_experts, bias=False)
        nn.init.normal_(self.gate.weight, std=init_std)
        self.register_buffer("l1_coef", torch.tensor(float(l1_coef_init), dtype=torch.float64))

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        gates = torch.relu(self.gate(x))
        active = gates > 0
        totals = gates.sum(-1, keepdim=True)
        probs = torch.where(totals > 0, gates / totals.clamp_min(torch.finfo(gates.dtype).tiny),
                            torch.full_like(gates, 1 / self.num_experts))
        load = active.sum(0) * self.num_experts / (self.k * len(x))  # f_e: 1 for every expert at the target
        l1 = self.l1_coef.to(gates.dtype) * (load.detach() * gates.mean(0)).sum()
        experts = torch.arange(self.num_experts, device=x.device).expand(len(x), -1)
        return RouterOutput(experts=experts, weights=gates, probs=probs, aux_losses={"l1": l1}, mask=active)

    @torch.no_grad()
    def update(self, outputs: list[RouterOutput]) -> None:
        zeros, gates = over_ranks(torch.tensor([[(~out.mask).sum().item(), out.mask.numel()] for out in outputs],
                                               dtype=torch.float64).sum(0))
        sparsity = float(zeros / gates)
        self.l1_coef.mul_(self.multiplier if sparsity < self.target_sparsity else 1 / self.multiplier)
