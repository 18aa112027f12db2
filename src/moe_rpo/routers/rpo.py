"""Router Policy Optimization: a categorical selection policy and a separate Gaussian weight policy,
both trained by REINFORCE (reward = -loss) in E-steps that alternate with M-steps."""
from __future__ import annotations

import math

import torch
from torch import nn

from moe_rpo.routers import noise
from moe_rpo.routers.base import Router, RouterOutput
from moe_rpo.routers.options import Option
from moe_rpo.routers.policy import selection_log_prob


class RPO(Router):
    """pi_select(S | x) = k draws without replacement from softmax(x W_R);
    pi_weight(alpha | S, x) = N(mu_S(x), weight_std^2) with mu(x) = x W_alpha + b (the expert weight
    embedding). Weights are free: not normalised, may exceed 1 or be negative.

    While training, the selection and weights are sampled and detached: the router learns only
    through `log_prob` (REINFORCE). At evaluation the policy's mode is used: top-k experts by
    probability, weights = mu.
    """

    seed_batched = True
    samples = True

    options = {"weight_std": Option("std of the Gaussian weight policy", exclusive_minimum=0),
               "weight_init": Option("initial weight mean (null: 1/k)"),
               "init_std": Option("std of the gates' normal initialisation", minimum=0),
               "e_steps": Option("router-only steps per cycle", minimum=1),
               "m_steps": Option("rest-of-model steps per cycle", minimum=0)}

    def __init__(self, dim: int, num_experts: int, k: int, weight_std: float = 0.1, weight_init: float | None = None,
                 init_std: float = 0.01, e_steps: int = 1, m_steps: int = 1):
        super().__init__(dim, num_experts, k)
        if weight_std <= 0:
            raise ValueError(f"RPO weight_std must be > 0, got {weight_std}")
        if e_steps < 1 or m_steps < 0:
            raise ValueError(f"RPO needs e_steps >= 1 and m_steps >= 0, got {e_steps}, {m_steps}")
        self.alternation = (e_steps, m_steps)
        self.weight_std = weight_std
        self.gate = nn.Linear(dim, num_experts, bias=False)
        self.weight_policy = nn.Linear(dim, num_experts)
        nn.init.normal_(self.gate.weight, std=init_std)
        nn.init.zeros_(self.weight_policy.weight)
        nn.init.constant_(self.weight_policy.bias, 1.0 / k if weight_init is None else weight_init)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        log_probs = torch.log_softmax(self.gate(x), dim=-1)
        probs = log_probs.exp()
        weight_mean = self.weight_policy(x)
        if not self.training:
            experts = probs.topk(self.k, dim=-1).indices
            return RouterOutput(experts=experts, weights=weight_mean.gather(-1, experts).detach(), probs=probs)
        experts = noise.sample_without_replacement(probs, self.k)
        mean = weight_mean.gather(-1, experts)
        weights = (mean + self.weight_std * noise.normal_like(mean)).detach()
        log_prob = selection_log_prob(log_probs, experts) + gaussian_log_prob(weights, mean, self.weight_std).sum(-1)
        return RouterOutput(experts=experts, weights=weights, probs=probs, log_prob=log_prob)


def gaussian_log_prob(value: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Elementwise log N(value; mean, std^2)."""
    return -0.5 * ((value - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)
