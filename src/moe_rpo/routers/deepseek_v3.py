"""The DeepSeek-V3 gate (DeepSeek-AI, 2024, arXiv 2412.19437; deepseek-ai/DeepSeek-V3 inference/model.py, Gate):
sigmoid scores s = sigmoid(x W), the auxiliary-loss-free bias in the selection (loss_free.py), weights = the
selected s renormalised to sum to one, times route_scale. Optional group-limited routing: the experts form
`groups` equal groups, a group's score is the sum of its two highest biased scores (its highest when a group
has one expert), and only the `topk_groups` best groups stay selectable. Defaults: one group (the reference's
n_groups = 1, topk_groups = 1 and route_scale = 1.0; the 671B model uses 8, 4 and 2.5 over 256 experts), bias
update rate 1e-3. With k = 1 the renormalised weight is always route_scale: the task gives the gate no
gradient (routers.task_gradient marks it), so run it with k >= 2."""
from __future__ import annotations

import torch

from moe_rpo.routers.loss_free import LossFreeBalance
from moe_rpo.routers.options import Option


class DeepSeekV3Gate(LossFreeBalance):
    options = {"update_rate": LossFreeBalance.options["update_rate"],
               "route_scale": LossFreeBalance.options["route_scale"],
               "groups": Option("expert groups of equal size (group-limited routing; 1: off)", minimum=1),
               "topk_groups": Option("groups whose experts stay selectable", minimum=1),
               "init_std": LossFreeBalance.options["init_std"]}

    def __init__(self, dim: int, num_experts: int, k: int, update_rate: float = 1e-3, route_scale: float = 1.0,
                 groups: int = 1, topk_groups: int = 1, init_std: float = 0.01):
        super().__init__(dim, num_experts, k, score="sigmoid", update_rate=update_rate, normalize=True,
                         route_scale=route_scale, init_std=init_std)
        if groups < 1 or num_experts % groups:
            raise ValueError(f"groups={groups} must divide the {num_experts} experts")
        if not 1 <= topk_groups <= groups or topk_groups * (num_experts // groups) < k:
            raise ValueError(f"topk_groups={topk_groups} of {groups} groups must leave at least k={k} experts")
        self.groups, self.topk_groups = groups, topk_groups

    def select(self, biased: torch.Tensor) -> torch.Tensor:
        if self.groups > 1:
            grouped = biased.view(len(biased), self.groups, -1)
            group_score = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(-1)
            dropped = torch.ones_like(group_score, dtype=torch.bool).scatter(
                1, group_score.topk(self.topk_groups, dim=-1).indices, False)
            biased = grouped.masked_fill(dropped.unsqueeze(-1), float("-inf")).flatten(1)
        return super().select(biased)
