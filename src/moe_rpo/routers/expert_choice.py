"""Expert-choice routing (Zhou et al., 2022): the experts pick the tokens. S = softmax(x W_g) over experts
for each token; each expert takes the `capacity` tokens of the batch with its highest scores,
capacity = min(N, ceil(capacity_factor * N / E)), so capacity_factor is the paper's c, the average number
of experts per token (null: c = k, the compute of top-k routing). A token gets 0..E experts, weighted by
its scores; a token no expert chose passes through the residual.

Caveat: the choice looks at the whole batch, so a token's routing depends on other tokens, including
later positions of its sequence: not causal for language models (as the paper notes for decoding)."""
from __future__ import annotations

import math

import torch
from torch import nn

from moe_rpo.routers.base import Router, RouterOutput
from moe_rpo.routers.options import Option


class ExpertChoice(Router):
    """experts [N, E] = arange(E) for every token, mask = chosen, weights = S where chosen else 0, probs = S."""
    slot_per_expert = True

    options = {"capacity_factor": Option("each expert takes its ceil(cf * N / E) best tokens, cf = average "
                                         "experts per token (null: k)", exclusive_minimum=0),
               "init_std": Option("std of the gate's normal initialisation", minimum=0)}

    def __init__(self, dim: int, num_experts: int, k: int, capacity_factor: float | None = 2.0,
                 init_std: float = 0.01):
        super().__init__(dim, num_experts, k)
        if capacity_factor is not None and capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be positive or None, got {capacity_factor}")
        self.capacity_factor = k if capacity_factor is None else capacity_factor
        self.gate = nn.Linear(dim, num_experts, bias=False)
        nn.init.normal_(self.gate.weight, std=init_std)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        N = len(x)
        probs = torch.softmax(self.gate(x), dim=-1)
        capacity = min(N, math.ceil(self.capacity_factor * N / self.num_experts))
        chosen = torch.zeros_like(probs, dtype=torch.bool).scatter(0, probs.topk(capacity, dim=0).indices, True)
        experts = torch.arange(self.num_experts, device=x.device).expand(N, -1)
        return RouterOutput(experts=experts, weights=probs * chosen, probs=probs, mask=chosen)
