"""Auxiliary-loss-free load balancing (Wang et al., 2024, "Auxiliary-Loss-Free Load Balancing Strategy for
Mixture-of-Experts", arXiv 2408.15664; used in DeepSeek-V3): a per-expert bias b enters the selection only,
top-k of (s + b), while the gate weights come from the unbiased scores s, so the bias is outside the gradient
path. After every optimizer step, b_i <- b_i + u * sign(mean load - load_i), with loads counted over the step's
tokens (all micro-batches, all data-parallel ranks). Defaults: u = 1e-3, the paper's best (1e-4 converges
slowly, 1e-2 oscillates); softmax scores with unnormalised weights, so that this arm differs from the standard
router by the balancing alone (the DeepSeek-V3 gate, deepseek_v3.py, adds the sigmoid scores). The update
adds in place to a persistent buffer (torchtitan #1222: rebinding it left zeros in checkpoints)."""
from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from moe_rpo.routers.base import Router, RouterOutput
from moe_rpo.routers.counts import expert_counts
from moe_rpo.routers.options import Option

Score = Literal["softmax", "sigmoid"]


class LossFreeBalance(Router):
    """experts = top-k(s + b); weights = s of the selected experts (renormalised over them with normalize,
    times route_scale); probs = s normalised to sum to one (the gate's own preference: the bias is a balancing
    device, so routing accuracy is read from s while the load shows what the bias made of it)."""

    options = {"score": Option("score function s of the gate logits"),
               "update_rate": Option("u of the bias update b_i += u * sign(mean load - load_i) per step", minimum=0),
               "normalize": Option("renormalise the selected scores to sum to one"),
               "route_scale": Option("factor on the weights", exclusive_minimum=0),
               "init_std": Option("std of the gate's normal initialisation", minimum=0)}

    def __init__(self, dim: int, num_experts: int, k: int, score: Score = "softmax", update_rate: float = 1e-3,
                 normalize: bool = False, route_scale: float = 1.0, init_std: float = 0.01):
        super().__init__(dim, num_experts, k)
        if score not in get_args(Score):
            raise ValueError(f"score must be one of {get_args(Score)}, got {score!r}")
        self.score, self.update_rate, self.normalize, self.route_scale = score, update_rate, normalize, route_scale
        self.gate = nn.Linear(dim, num_experts, bias=False)
        nn.init.normal_(self.gate.weight, std=init_std)
        self.register_buffer("expert_bias", torch.zeros(num_experts))  # persistent: checkpoints carry it

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.gate(x)
        return torch.softmax(logits, dim=-1) if self.score == "softmax" else torch.sigmoid(logits)

    def select(self, biased: torch.Tensor) -> torch.Tensor:
        """[N, k] experts from the biased scores [N, E]."""
        return biased.topk(self.k, dim=-1).indices

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        scores = self.scores(x)
        experts = self.select(scores.detach() + self.expert_bias.to(scores.dtype))
        weights = scores.gather(-1, experts)
        if self.normalize:
            weights = weights / weights.sum(-1, keepdim=True)
        return RouterOutput(experts=experts, weights=weights * self.route_scale,
                            probs=scores / scores.sum(-1, keepdim=True))

    @torch.no_grad()
    def update(self, outputs: list[RouterOutput]) -> None:
        load = expert_counts(outputs, self.num_experts)
        self.expert_bias.add_((self.update_rate * torch.sign(load.mean() - load)).to(self.expert_bias.dtype))
