"""MoE++'s zero-computation experts (routers/moe_plus_plus.py), run densely on the tokens: they cost a few
elementwise operations, not an MLP."""
from __future__ import annotations

import torch
from torch import nn

KINDS = ("zero", "copy", "constant")


class NullExperts(nn.Module):
    """zero: E(x) = 0; copy: E(x) = x; constant: E(x) = a1 x + a2 v, [a1, a2] = softmax(W_c x), v trained."""

    def __init__(self, kinds: tuple[str, ...], dim: int):
        super().__init__()
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown null expert kind(s) {unknown}; choose from {KINDS}")
        self.kinds = tuple(kinds)
        constants = kinds.count("constant")
        self.vectors = nn.Parameter(torch.randn(constants, dim) * 0.02)  # GPT-2's initialisation scale
        self.mixers = nn.Linear(dim, 2 * constants, bias=False)
        nn.init.normal_(self.mixers.weight, std=0.02)

    def __len__(self) -> int:
        return len(self.kinds)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: [N, C] tokens; weights: [N, len(kinds)] each token's summed routing weight on each null expert.
        Returns the weighted sum of their outputs [N, C]."""
        out = torch.zeros_like(x)
        mix = torch.softmax(self.mixers(x).view(len(x), -1, 2), dim=-1) if len(self.vectors) else None
        constant = 0
        for j, kind in enumerate(self.kinds):
            if kind == "copy":
                out = out + weights[:, j:j + 1] * x
            elif kind == "constant":
                a = mix[:, constant]
                out = out + weights[:, j:j + 1] * (a[:, :1] * x + a[:, 1:] * self.vectors[constant])
                constant += 1
        return out
