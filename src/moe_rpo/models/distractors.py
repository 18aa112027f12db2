"""Routing recovery: MoE layers built around a pretrained MLP, where only the router trains and the
right answer is known (expert 0, the pretrained MLP)."""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from moe_rpo.models.gpt import GPT, init_gpt2_
from moe_rpo.models.moe import MoE
from moe_rpo.routers import build_router

MODES = ("diff", "sim")


def recovery_model(base: GPT, layers: list[int], mode: str, scale: float, router_spec: dict, k: int = 1,
                   num_experts: int = 4, seed: int = 0) -> GPT:
    """A copy of the dense GPT `base` whose MLPs in `layers` become MoE layers of `num_experts` experts:
    expert 0 is the pretrained MLP, experts 1.. are distractors:

    diff: freshly initialised MLPs (GPT-2's initialisation);
    sim:  the pretrained MLP with every parameter tensor W (weights and biases) perturbed to
          W + scale * W.std() * N(0, 1), i.e. noise of relative size `scale` (scale = 0: exact copies).

    Only router parameters are trainable. The routers and distractors are drawn from `seed`; the global
    random state is left untouched. `base` itself is not modified.
    """
    n_layer = base.config.n_layer
    if base.routers():
        raise ValueError("the base model must be dense (it already has MoE layers)")
    if not layers or len(set(layers)) != len(layers) or not all(0 <= i < n_layer for i in layers):
        raise ValueError(f"layers must be distinct indices in [0, {n_layer}), got {layers}")
    if mode not in MODES:
        raise ValueError(f"unknown recovery mode {mode!r}; choose one of {MODES}")
    if scale < 0:
        raise ValueError(f"scale must be >= 0, got {scale}")
    if num_experts < 2:
        raise ValueError(f"recovery needs num_experts >= 2 (the pretrained MLP and a distractor), got {num_experts}")
    model = copy.deepcopy(base)
    model.config = replace(base.config, moe_layers=tuple(sorted(layers)), num_experts=num_experts, k=k,
                           router=dict(router_spec))
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)  # every distractor first, so that all router methods see the same experts
        distractors = {i: [distractor(model.transformer.h[i].mlp, mode, scale, n_layer)
                           for _ in range(num_experts - 1)] for i in sorted(layers)}
        for i in sorted(layers):
            router = build_router(router_spec, base.config.n_embd, num_experts, k)
            model.transformer.h[i].mlp = MoE([model.transformer.h[i].mlp, *distractors[i]], router)
    freeze_all_but_routers(model)
    return model


def distractor(pretrained: nn.Module, mode: str, scale: float, n_layer: int) -> nn.Module:
    """A "diff" or "sim" copy of the pretrained MLP (see recovery_model), drawn from the global RNG."""
    expert = copy.deepcopy(pretrained)
    if mode == "diff":
        init_gpt2_(expert, n_layer)
    else:
        for p in expert.parameters():
            p.add_(scale * p.std() * torch.randn_like(p))
    return expert


def freeze_all_but_routers(model: GPT) -> None:
    """Make only the routers' parameters trainable."""
    router_params = {id(p) for router in model.routers() for p in router.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in router_params)
