"""Fixed random routing (a routerless baseline): softmax top-k over x W with W ~ N(0, init_std^2 / dim)
drawn once at construction and never trained."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from moe_rpo.routers.options import Option
from moe_rpo.routers.softmax_topk import SoftmaxTopK


class FixedRandom(SoftmaxTopK):
    """Softmax top-k of a frozen random projection, stored as a buffer (no parameters). W's std is
    init_std / sqrt(dim), so unit-variance features give logits of std init_std: the default 1.0 gives
    weights that are neither one-hot nor uniform. Deterministic given the torch seed."""
    trainable = False

    options = {**SoftmaxTopK.options,
               "init_std": Option("logit std of the frozen projection W ~ N(0, init_std^2 / dim)", minimum=0)}

    def __init__(self, dim: int, num_experts: int, k: int, normalize: bool = False, init_std: float = 1.0):
        super().__init__(dim, num_experts, k, normalize=normalize, init_std=init_std / math.sqrt(dim))
        projection = self.gate.weight.detach()
        del self.gate
        self.register_buffer("projection", projection)

    def route_logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.projection)
