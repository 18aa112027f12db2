"""Routing methods behind one interface (`Router` -> `RouterOutput`), built by name from a config spec."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

from moe_rpo.code_inputs import PLUGIN, module_sources, named_imports, named_imports_of, plugin_module
from moe_rpo.routers.base import Router, RouterOutput
from moe_rpo.routers.base_layers import BaseLayer
from moe_rpo.routers.deepseek_v3 import DeepSeekV3Gate
from moe_rpo.routers.default_moe import DefaultMoE
from moe_rpo.routers.dselect_k import DSelectK
from moe_rpo.routers.em import EM
from moe_rpo.routers.expert_choice import ExpertChoice
from moe_rpo.routers.fixed_random import FixedRandom
from moe_rpo.routers.hashing import Hash
from moe_rpo.routers.jitter import Jitter
from moe_rpo.routers.loss_free import LossFreeBalance
from moe_rpo.routers.moe_plus_plus import MoEPlusPlus
from moe_rpo.routers.noisy_topk import NoisyTopK
from moe_rpo.routers.plugin import load_class
from moe_rpo.routers.reinforce import Reinforce
from moe_rpo.routers.remoe import ReMoE
from moe_rpo.routers.rpo import RPO
from moe_rpo.routers.softmax_topk import SoftmaxTopK
from moe_rpo.routers.switch import Switch
from moe_rpo.routers.top2 import Top2
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
    # 2024-2026 (README "Routers")
    "loss_free": LossFreeBalance,
    "deepseek_v3": DeepSeekV3Gate,
    "remoe": ReMoE,
    "top2": Top2,
    "default_moe": DefaultMoE,
    "moe_plus_plus": MoEPlusPlus,
}

__all__ = ["METHODS", "Router", "RouterOutput", "build_router", "router_class"]


def router_class(spec: dict) -> type[Router]:
    """The Router class a config spec names: a built-in method, or a plugin's target (routers/plugin.py)."""
    method = spec.get("method")
    if method == PLUGIN:
        return load_class(spec.get("target"))
    if method not in METHODS:
        raise ValueError(f"unknown router method {method!r}; choose one of {sorted(METHODS)} or {PLUGIN!r}")
    return METHODS[method]


def build_router(spec: dict, dim: int, num_experts: int, k: int) -> Router:
    """Build a router from a config spec such as {"method": "rpo", "weight_std": 0.1}, or
    {"method": "plugin", "target": "package.module:Class", "options": {...}} for a router of another package."""
    cls = router_class(spec)
    options = dict(spec.get("options") or {}) if spec["method"] == PLUGIN else {
        key: value for key, value in spec.items() if key != "method"}
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "dim", "num_experts", "k"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"router {spec.get('target', spec['method'])!r} has no option(s) {unknown}; "
                         f"it takes {sorted(allowed)}")
    try:
        return cls(dim, num_experts, k, **options)
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001  (a plugin option of the wrong type, a size torch refuses, ...)
        raise ValueError(f"router {spec.get('target', spec['method'])!r}: {type(error).__name__}: "
                         f"{(str(error).splitlines() or [''])[0]}") from None


def unused_router_modules(specs) -> tuple[str, ...]:
    """The built-in router modules that none of these router specs' classes builds on (its module, and the router
    modules that one imports by name, in turn; a plugin's from its source files): a job that builds only these
    routers never runs the others, so its code inputs leave them out and editing one router reruns only the jobs
    that build it. (Every router module also imports this package, which imports them all: that is not counted.)"""
    routers = {cls.__module__ for cls in METHODS.values()}
    todo = []
    for spec in specs:
        if spec["method"] == PLUGIN:
            sources = module_sources(plugin_module(spec["target"])[0])
            todo += [name for source in sources for name in named_imports(ast.walk(ast.parse(Path(source).read_text())))]
        else:
            todo.append(router_class(spec).__module__)
    used = set()
    while todo:
        module = todo.pop()
        if module in routers and module not in used:
            used.add(module)
            todo += named_imports_of(module)
    return tuple(sorted(routers - used))
