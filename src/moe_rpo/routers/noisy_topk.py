"""Noisy top-k gating (Shazeer et al., 2017) with its importance and load auxiliary losses."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from moe_rpo.routers import noise
from moe_rpo.routers.base import Router, RouterOutput
from moe_rpo.routers.options import Option


def cv_squared(values: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation, var / mean^2 (0 for a single value)."""
    if values.numel() < 2:
        return values.new_zeros(())
    return values.var() / (values.mean() ** 2 + 1e-10)


class NoisyTopK(Router):
    """H(x) = x W_g + eps * softplus(x W_noise), eps ~ N(0, 1) while training (no noise at evaluation);
    G(x) = softmax(KeepTopK(H(x), k)). probs = softmax(H(x)), so the weights are probs renormalised over
    the k selected experts.

    aux_losses: importance = w_importance * CV(sum_x G(x))^2 and load = w_load * CV(sum_x P(x, i))^2,
    where P(x, i) = Phi((x W_g)_i - kth_excluding(H(x), k, i)) / softplus(x W_noise)_i) is the
    probability that expert i stays in the top k when its noise is drawn again.
    W_g and W_noise start at zero, as in the paper.
    """

    seed_batched = True

    options = {"w_importance": Option("weight of the importance loss CV(importance)^2", minimum=0),
               "w_load": Option("weight of the load loss CV(load)^2", minimum=0)}

    def __init__(self, dim: int, num_experts: int, k: int, w_importance: float = 0.1, w_load: float = 0.1):
        super().__init__(dim, num_experts, k)
        self.w_importance, self.w_load = w_importance, w_load
        self.gate = nn.Linear(dim, num_experts, bias=False)
        self.noise = nn.Linear(dim, num_experts, bias=False)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.noise.weight)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        clean = self.gate(x)
        if not self.training:
            probs = torch.softmax(clean, dim=-1)
            weights, experts = probs.topk(self.k, dim=-1)
            return RouterOutput(experts=experts, weights=weights / weights.sum(-1, keepdim=True), probs=probs)
        noise_std = F.softplus(self.noise(x)) + 1e-2  # the floor keeps P(x, i) finite
        noisy = clean + noise.normal_like(clean) * noise_std
        top_logits, experts = noisy.topk(min(self.k + 1, self.num_experts), dim=-1)
        weights = torch.softmax(top_logits[:, :self.k], dim=-1)
        gates = torch.zeros_like(clean).scatter(1, experts[:, :self.k], weights)
        aux = {"importance": self.w_importance * cv_squared(gates.sum(0)),
               "load": self.w_load * cv_squared(self.prob_in_top_k(clean, noisy, noise_std, top_logits).sum(0))}
        return RouterOutput(experts=experts[:, :self.k], weights=weights, probs=torch.softmax(noisy, dim=-1),
                            aux_losses=aux)

    def prob_in_top_k(self, clean, noisy, noise_std, top_logits) -> torch.Tensor:
        """P(x, i) [N, E]: for an expert now in the top k, the threshold it must beat is the (k+1)-th
        largest noisy logit; for one outside, the k-th."""
        if self.k == self.num_experts:
            return torch.ones_like(clean)
        kth, next_after = top_logits[:, self.k - 1:self.k], top_logits[:, self.k:self.k + 1]
        in_top = noisy >= kth
        threshold = torch.where(in_top, next_after, kth)
        normal = torch.distributions.Normal(0.0, 1.0)
        return normal.cdf((clean - threshold) / noise_std)
