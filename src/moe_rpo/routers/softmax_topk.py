"""Standard softmax top-k routing: p = softmax(x W_R), select top-k, weight by p."""
from __future__ import annotations

import torch
from torch import nn

from moe_rpo.routers.base import Router, RouterOutput
from moe_rpo.routers.options import Option


class SoftmaxTopK(Router):
    """Top-k of softmax(x W_R); weights are the raw probabilities (normalize=False) or the
    probabilities renormalised over the k selected experts (normalize=True)."""

    seed_batched = True
    options = {"normalize": Option("renormalise the top-k weights to sum to one"),
               "init_std": Option("std of the gate's normal initialisation", minimum=0)}

    def __init__(self, dim: int, num_experts: int, k: int, normalize: bool = False, init_std: float = 0.01):
        super().__init__(dim, num_experts, k)
        self.normalize = normalize
        self.gate = nn.Linear(dim, num_experts, bias=False)
        nn.init.normal_(self.gate.weight, std=init_std)

    def route_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        probs = torch.softmax(self.route_logits(x), dim=-1)
        weights, experts = probs.topk(self.k, dim=-1)
        if self.normalize:
            weights = weights / weights.sum(-1, keepdim=True)
        return RouterOutput(experts=experts, weights=weights, probs=probs)
