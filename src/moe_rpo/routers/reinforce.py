"""RL routing: REINFORCE on the expert selection, weights from the same probabilities."""
from __future__ import annotations

import torch

from moe_rpo.routers.base import RouterOutput
from moe_rpo.routers.noise import sample_without_replacement
from moe_rpo.routers.policy import selection_log_prob
from moe_rpo.routers.softmax_topk import SoftmaxTopK


class Reinforce(SoftmaxTopK):
    """Samples k experts from softmax(x W_R) while training (top-k at evaluation); the weights
    are the (unnormalised) probabilities, so the router also gets the ordinary gradient through
    them. No separate weight policy: this is RPO's selection without its weight policy."""

    samples = True

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        if not self.training:
            return super().forward(x, token_ids)
        log_probs = torch.log_softmax(self.route_logits(x), dim=-1)
        probs = log_probs.exp()
        experts = sample_without_replacement(probs, self.k)
        weights = probs.gather(-1, experts)
        if self.normalize:
            weights = weights / weights.sum(-1, keepdim=True)
        return RouterOutput(experts=experts, weights=weights, probs=probs,
                            log_prob=selection_log_prob(log_probs, experts))
