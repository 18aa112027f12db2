"""Does a trained MoE depend on its routing? Losses with every token sent elsewhere, next to the loss."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from moe_rpo.models import GPT
from moe_rpo.models.moe import MoE
from moe_rpo.routers import Router, RouterOutput


class Misrouted(Router):
    """Wraps a trained router and sends every token to other experts: each selection e becomes
    (e + offset) mod E with one random offset in [1, E) per token, weights unchanged. The offsets come
    from a fixed generator, so every evaluation misroutes the same way."""

    def __init__(self, router: Router, seed: int = 0):
        super().__init__(router.dim, router.num_experts, router.k)
        self.router = router
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        out = self.router(x, token_ids)
        offset = torch.randint(1, self.num_experts, (len(x), 1), generator=self.generator).to(out.experts.device)
        return RouterOutput(experts=(out.experts + offset) % self.num_experts, weights=out.weights,
                            probs=out.probs, mask=out.mask)


@contextlib.contextmanager
def replaced_routers(model: GPT, make):
    """Within the block, MoE layer i routes with make(i, its router); the routers are given back afterwards."""
    layers = {i: block.mlp for i, block in enumerate(model.transformer.h) if isinstance(block.mlp, MoE)}
    originals = {i: layer.router for i, layer in layers.items()}
    try:
        for i, layer in layers.items():
            layer.router = make(i, layer.router)
        yield model
    finally:
        for i, layer in layers.items():
            layer.router = originals[i]


def misrouted(model: GPT, seed: int = 0):
    """Within the block, every MoE layer of `model` misroutes (see Misrouted)."""
    return replaced_routers(model, lambda i, router: Misrouted(router, seed))


class UnitWeights(Router):
    """Wraps a trained router and keeps its selection but gives each token's k experts weights 1/k (summing
    to 1, as the one pretrained expert needs in recovery): the loss of the routing alone, apart from the
    learned weights. Counts the tokens' summed learned weights (`mean_weight`)."""

    def __init__(self, router: Router):
        super().__init__(router.dim, router.num_experts, router.k)
        self.router = router
        self.weight_sum, self.tokens = 0.0, 0

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        out = self.router(x, token_ids)
        self.weight_sum += out.weights.float().sum().item()
        self.tokens += len(x)
        return RouterOutput(experts=out.experts, weights=torch.full_like(out.weights, 1 / out.weights.shape[-1]),
                            probs=out.probs, mask=out.mask)

    @property
    def mean_weight(self) -> float:
        """The mean over the tokens seen of a token's summed learned weights."""
        return self.weight_sum / self.tokens


@contextlib.contextmanager
def unit_weights(model: GPT):
    """Within the block, every MoE layer of `model` routes with unit weights (see UnitWeights); yields the
    wrappers by layer."""
    wrappers = {}

    def wrap(i, router):
        wrappers[i] = UnitWeights(router)
        return wrappers[i]

    with replaced_routers(model, wrap):
        yield wrappers


def summarize_layers(layers: list[dict]) -> dict:
    """Means over MoE layers: load balance (E * the largest expert's load: 1 = balanced, E = one expert
    takes everything), router entropy (nats) and the share of tokens no expert processed; None for a dense
    model."""
    if not layers:
        return {"max_load_ratio": None, "entropy": None, "unrouted": None}
    return {"max_load_ratio": float(np.mean([len(layer["load"]) * max(layer["load"]) for layer in layers])),
            "entropy": float(np.mean([layer["entropy"] for layer in layers])),
            "unrouted": float(np.mean([layer["unrouted"] for layer in layers]))}
