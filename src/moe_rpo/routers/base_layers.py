"""BASE layers (Lewis et al., 2021): while training, a balanced linear assignment of the batch's N tokens to
the E experts, maximising the total affinity sum_t h_t . w_e(t) with every expert taking at most
C = ceil(N / E) tokens (exactly N / E when E divides N); at evaluation, greedy top-1 by affinity.
The gate is y = sigmoid(h . w_e) f_e(h); probs = softmax of the affinities; k must be 1.

The assignment is an auction (Bertsekas; the paper solves it by auction too) in which the experts bid for
tokens: an expert with free slots bids for its best tokens so that all it holds is worth w - eps to it,
w being its next-best token's value (score - price). This keeps eps-complementary slackness, so the
result is within N' * eps of the optimum (N' = E * C); eps-scaling makes it fast. Caveat: like expert
choice, the training assignment depends on the whole batch, so it is not causal for language models."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from moe_rpo.routers.base import Router, RouterOutput

EPS_SCALING = 8  # eps shrinks by this factor between auction phases


@torch.no_grad()
def balanced_assignment(scores: torch.Tensor, capacity: int, tolerance: float | None = None) -> torch.Tensor:
    """experts [N] for scores [N, E]: every expert gets at most `capacity` tokens (E * capacity >= N) and the
    total score is within `tolerance` of the maximum (default 1e-3 of the scores' range)."""
    N, E = scores.shape
    if E * capacity < N:
        raise ValueError(f"{E} experts of capacity {capacity} cannot take {N} tokens")
    if not torch.isfinite(scores).all() or (tolerance is not None and tolerance <= 0):
        raise ValueError("balanced assignment needs finite scores and a positive tolerance")
    if E == 1:
        return torch.zeros(N, dtype=torch.long, device=scores.device)
    # padding tokens worth 0 to every expert fill the spare slots without changing the optimum
    value = F.pad(scores.T.double(), (0, E * capacity - N))
    spread = float(value.max() - value.min()) or 1.0
    eps = (1e-3 * spread if tolerance is None else tolerance) / value.shape[1]
    experts = torch.arange(E, device=scores.device)[:, None]
    price = torch.zeros(value.shape[1], dtype=value.dtype, device=value.device)
    step = spread
    while True:  # one auction per eps, from the last one's prices
        step = max(step / EPS_SCALING, eps)
        owner = torch.full_like(price, -1, dtype=torch.long)
        while True:
            held = owner == experts  # [E, N']
            free = capacity - held.sum(1)
            most = int(free.max())
            if most == 0:
                break
            top = (value - price).masked_fill(held, -math.inf).topk(most + 1, dim=1)
            next_best = top.values.gather(1, free[:, None])  # the (free_e + 1)-th best token e does not hold
            wanted = torch.arange(most, device=free.device) < free[:, None]
            bidding = torch.zeros_like(held).scatter(1, top.indices[:, :most], wanted) | (held & (free > 0)[:, None])
            bids = torch.where(bidding, value - next_best + step, -math.inf)
            best, winner = bids.max(0)
            won = bidding.any(0)
            price = torch.where(won, best, price)
            owner = torch.where(won, winner, owner)
        if step == eps:
            break
    return owner[:N]


class BaseLayer(Router):
    """Expert embeddings w_e (orthogonal init with gain 0.1, as in fairseq) are trained only through the
    sigmoid gate."""
    max_k = 1
    batch_assignment = True

    def __init__(self, dim: int, num_experts: int, k: int):
        super().__init__(dim, num_experts, k)  # max_k: BASE layers send every token to one expert
        self.centroids = nn.Parameter(torch.empty(num_experts, dim))
        nn.init.orthogonal_(self.centroids, gain=0.1)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        affinity = F.linear(x, self.centroids)
        if self.training:
            experts = balanced_assignment(affinity.detach(), math.ceil(len(x) / self.num_experts))[:, None]
        else:
            experts = affinity.argmax(-1, keepdim=True)
        return RouterOutput(experts=experts, weights=torch.sigmoid(affinity.gather(1, experts)),
                            probs=torch.softmax(affinity, dim=-1))
