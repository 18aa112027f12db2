"""Cosine routing (as in X-MoE, Chi et al. 2022): a token's score for an expert is the cosine similarity of
its projected features and the expert's embedding, divided by a temperature, so that the router's logits stay
bounded whatever the feature norms. Top-k of the softmax, weights the probabilities."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from moe_rpo.routers import Router, RouterOutput
from moe_rpo.routers.options import Option


class CosineRouter(Router):
    options = {"temperature": Option("divides the cosine similarities", exclusive_minimum=0),
               "proj_dim": Option("dimension of the routing space", minimum=1)}

    def __init__(self, dim: int, num_experts: int, k: int, temperature: float = 0.3, proj_dim: int = 8):
        super().__init__(dim, num_experts, k)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.project = nn.Linear(dim, proj_dim, bias=False)
        self.expert_embeddings = nn.Parameter(torch.randn(num_experts, proj_dim) * 0.32)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        cosine = F.normalize(self.project(x), dim=-1) @ F.normalize(self.expert_embeddings, dim=-1).T
        probs = torch.softmax(cosine / self.temperature, dim=-1)
        weights, experts = probs.topk(self.k, dim=-1)
        return RouterOutput(experts=experts, weights=weights, probs=probs)
