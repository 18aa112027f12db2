"""Routing methods behind one interface (`Router` -> `RouterOutput`), built by name from a config spec."""
from __future__ import annotations

import inspect

from moe_rpo.routers.base import Router, RouterOutput
from moe_rpo.routers.base_layers import BaseLayer
from moe_rpo.routers.dselect_k import DSelectK
from moe_rpo.routers.em import EM
from moe_rpo.routers.expert_choice import ExpertChoice
from moe_rpo.routers.fixed_random import FixedRandom
from moe_rpo.routers.hashing import Hash
from moe_rpo.routers.jitter import Jitter
from moe_rpo.routers.noisy_topk import NoisyTopK
from moe_rpo.routers.reinforce import Reinforce
from moe_rpo.routers.rpo import RPO
from moe_rpo.routers.softmax_topk import SoftmaxTopK
from moe_rpo.routers.switch import Switch
from moe_rpo.routers.zloss import ZLoss

METHODS: dict[str, type[Router]] = {
    "softmax_topk": SoftmaxTopK,
    "jitter": Jitter,
    "reinforce": Reinforce,
    "rpo": RPO,
    "em": EM,
    "noisy_topk": NoisyTopK,
    "switch": Switch,
    "zloss": ZLoss,
    "hash": Hash,
    "fixed_random": FixedRandom,
    "dselect_k": DSelectK,
    "base": BaseLayer,
    "expert_choice": ExpertChoice,
}

__all__ = ["METHODS", "Router", "RouterOutput", "build_router"]


def build_router(spec: dict, dim: int, num_experts: int, k: int) -> Router:
    """Build a router from a config spec such as {"method": "rpo", "weight_std": 0.1}."""
    options = dict(spec)
    method = options.pop("method", None)
    if method not in METHODS:
        raise ValueError(f"unknown router method {method!r}; choose one of {sorted(METHODS)}")
    cls = METHODS[method]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "dim", "num_experts", "k"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"router method {method!r} has no option(s) {unknown}; it takes {sorted(allowed)}")
    return cls(dim, num_experts, k, **options)
