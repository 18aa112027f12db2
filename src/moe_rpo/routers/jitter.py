"""Switch-Transformer jitter: multiplicative input noise x * U(1 - eps, 1 + eps) during training."""
from __future__ import annotations

import torch

from moe_rpo.routers import noise
from moe_rpo.routers.options import Option
from moe_rpo.routers.softmax_topk import SoftmaxTopK


class Jitter(SoftmaxTopK):
    """Softmax top-k whose router input is jittered while training."""

    options = {**SoftmaxTopK.options,
               "epsilon": Option("multiplicative input jitter while training: x * U(1 - eps, 1 + eps)", minimum=0,
                                 exclusive_maximum=1)}

    def __init__(self, dim: int, num_experts: int, k: int, epsilon: float = 0.1, normalize: bool = False,
                 init_std: float = 0.01):
        super().__init__(dim, num_experts, k, normalize=normalize, init_std=init_std)
        self.epsilon = epsilon

    def route_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.epsilon > 0:
            x = x * noise.uniform_like(x, 1 - self.epsilon, 1 + self.epsilon)
        return self.gate(x)
