"""Top-2 gating with a random second expert, the two policies of GShard-era code (Lepikhin et al., 2020, arXiv
2006.16668; fairscale/DeepSpeed `top2gating`, `second_expert_policy`):
random:   the two experts of highest probability, weights g1, g2 renormalised over them; while training the
          second is kept only with probability min(1, 2 * g2) (FastMoE GShardGate: dropped where 2 g2 < U(0,1)).
sampling: the first expert is the argmax; while training the second is the argmax of logits + Gumbel noise over
          the other experts (a draw from the softmax without the first), weights renormalised over the two.
At evaluation both take the top two. The balance loss is GShard's, E * sum_e f_e P_e with f_e the share of
first choices (coefficient 1e-2, as Switch). With k = 1 both are top-1 with that loss."""
from __future__ import annotations

from typing import Literal, get_args

import torch

from moe_rpo.routers import noise
from moe_rpo.routers.base import RouterOutput, count_experts
from moe_rpo.routers.options import Option
from moe_rpo.routers.softmax_topk import SoftmaxTopK

Policy = Literal["random", "sampling"]


class Top2(SoftmaxTopK):
    max_k = 2
    random_selection = True

    options = {"second_policy": Option("random: keep the second expert with probability 2 g2 (GShard); "
                                       "sampling: draw it by Gumbel noise"),
               "balance_coef": Option("coefficient of the balance loss E * sum_e f_e P_e", minimum=0),
               "init_std": SoftmaxTopK.options["init_std"]}

    def __init__(self, dim: int, num_experts: int, k: int, second_policy: Policy = "random",
                 balance_coef: float = 0.01, init_std: float = 0.01):
        super().__init__(dim, num_experts, k, normalize=True, init_std=init_std)
        if second_policy not in get_args(Policy):
            raise ValueError(f"second_policy must be one of {get_args(Policy)}, got {second_policy!r}")
        self.second_policy, self.balance_coef = second_policy, balance_coef

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        logits = self.route_logits(x)
        probs = torch.softmax(logits, dim=-1)
        experts, mask = probs.topk(self.k, dim=-1).indices, None
        if self.training and self.k == 2 and self.second_policy == "sampling":
            others = (logits.detach() + noise.gumbel_like(logits)).scatter(1, experts[:, :1], float("-inf"))
            experts = torch.cat([experts[:, :1], others.argmax(-1, keepdim=True)], dim=1)
        weights = probs.gather(-1, experts)
        weights = weights / weights.sum(-1, keepdim=True)
        if self.training and self.k == 2 and self.second_policy == "random":
            keep_second = 2 * weights[:, 1].detach() > noise.rand(len(x), x.device)
            mask = torch.stack([torch.ones_like(keep_second), keep_second], dim=1)
            weights = weights * mask
        first = count_experts(experts[:, 0], self.num_experts) / len(x)
        aux = {"balance": self.balance_coef * self.num_experts * (first.to(probs.dtype) * probs.mean(0)).sum()}
        return RouterOutput(experts=experts, weights=weights, probs=probs, aux_losses=aux, mask=mask)
