"""DSelect-k (Hazimeh et al., 2021), per-example gating: k single-expert selectors, each picking an expert
by a smoothed binary code of m = ceil(log2 E) bits.

  S(t) = 0 for t <= -gamma/2, 1 for t >= gamma/2, else -2 t^3 / gamma^3 + 3 t / (2 gamma) + 1/2
  z_i = x W_i (m logits),   r_i(e) = prod_j (S(z_ij) if bit_j(e) else 1 - S(z_ij))
  alpha = softmax(x W_alpha) over the k selectors,   q(e) = sum_i alpha_i r_i(e)

Every expert with q > 0 is active (all of them early in training; at most k once the z saturate).
When E is not a power of 2, codes >= E reach no expert, as in the paper's code: q then sums to
sum_i alpha_i R_i <= 1 with R_i = sum_{e<E} r_i(e), and the aux loss reachable = mean over tokens of
sum_i (1 / R_i - 1) (the paper's 1 / R_i less its minimum; R_i clamped at 1e-6) keeps the selectors
on real experts.
Optional entropy regulariser (entropy_coef, default 0): mean over tokens of sum_i -sum_e r_i(e) log(r_i(e) + 1e-6)
(the paper code's epsilon keeps the gradient finite at r = 0).
Initialisation as in the paper's code: z-layer U(-gamma/100, gamma/100), alpha-layer U(-0.05, 0.05)."""
from __future__ import annotations

import math

import torch
from torch import nn

from moe_rpo.routers.base import Router, RouterOutput
from moe_rpo.routers.options import Option


def smooth_step(t: torch.Tensor, gamma: float) -> torch.Tensor:
    cubic = -2 * t**3 / gamma**3 + 3 * t / (2 * gamma) + 0.5
    return torch.where(t <= -gamma / 2, torch.zeros_like(t), torch.where(t >= gamma / 2, torch.ones_like(t), cubic))


class DSelectK(Router):
    slot_per_expert = True
    seed_batched = True

    options = {"gamma": Option("width of the smooth-step's cubic region", exclusive_minimum=0),
               "entropy_coef": Option("weight of the selectors' entropy regulariser", minimum=0)}

    def __init__(self, dim: int, num_experts: int, k: int, gamma: float = 1.0, entropy_coef: float = 0.0):
        super().__init__(dim, num_experts, k)
        if num_experts < 2 or gamma <= 0:
            raise ValueError(f"DSelect-k needs num_experts >= 2 and gamma > 0, got {num_experts}, {gamma}")
        self.gamma, self.entropy_coef = gamma, entropy_coef
        self.bits = math.ceil(math.log2(num_experts))
        self.selectors = nn.Linear(dim, k * self.bits)
        self.selector_weights = nn.Linear(dim, k)
        nn.init.uniform_(self.selectors.weight, -gamma / 100, gamma / 100)
        nn.init.uniform_(self.selectors.bias, -gamma / 100, gamma / 100)
        nn.init.uniform_(self.selector_weights.weight, -0.05, 0.05)
        nn.init.uniform_(self.selector_weights.bias, -0.05, 0.05)
        codes = (torch.arange(num_experts)[:, None] >> torch.arange(self.bits - 1, -1, -1)) & 1  # bit j, MSB first
        self.register_buffer("codes", codes.bool(), persistent=False)

    def selector_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """r [N, k, E]: each selector's weights on the experts."""
        s = smooth_step(self.selectors(x).view(len(x), self.k, 1, self.bits), self.gamma)
        return torch.where(self.codes, s, 1 - s).prod(-1)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        r = self.selector_outputs(x)
        alpha = torch.softmax(self.selector_weights(x), dim=-1)
        q = (alpha[..., None] * r).sum(1)
        aux = {}
        if self.entropy_coef:
            aux["entropy"] = self.entropy_coef * -(r * torch.log(r + 1e-6)).sum((1, 2)).mean()
        if self.num_experts != 2**self.bits:
            aux["reachable"] = (1 / r.sum(-1).clamp_min(1e-6) - 1).sum(-1).mean()
        experts = torch.arange(self.num_experts, device=x.device).expand(len(x), -1)
        probs = q / q.sum(-1, keepdim=True).clamp_min(1e-12)
        return RouterOutput(experts=experts, weights=q, probs=probs, aux_losses=aux, mask=q > 0)
