"""Routers from any importable package: the config spec {method: plugin, target: "package.module:Class",
options: {...}} names a Router subclass, which is built with those options like a built-in router. The config
check builds it once and runs one forward pass on random features in both modes (`check_interface`), so that a
plugin that does not keep the interface fails before any job starts, naming its key."""
from __future__ import annotations

import importlib

import torch

from moe_rpo.code_inputs import plugin_module
from moe_rpo.routers.base import Router, RouterOutput


def load_class(target: str) -> type[Router]:
    """The Router subclass that `target` ("package.module:ClassName") names."""
    module_name, name = plugin_module(target)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"plugin target {target!r}: cannot import {module_name!r} ({error}); install its package "
                         f"(pip install -e path/to/package) or put it on PYTHONPATH") from None
    except (Exception, SystemExit) as error:  # noqa: BLE001  (a plugin module runs code when imported: name it)
        raise ValueError(f"plugin target {target!r}: importing {module_name!r} raised {type(error).__name__}: "
                         f"{(str(error).splitlines() or [''])[0]}") from None
    cls = getattr(module, name, None)
    if cls is None:
        raise ValueError(f"plugin target {target!r}: module {module_name!r} has no {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Router)):
        raise ValueError(f"plugin target {target!r} is not a subclass of moe_rpo.routers.Router")
    return cls


def check_interface(router: Router, tokens: int = 16, vocab: int = 50) -> None:
    """One forward pass on random features and token ids, in training and in evaluation mode; a ValueError
    says what in the RouterOutput breaks the interface (routers/base.py)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, router.dim, generator=generator)
    token_ids = torch.randint(0, vocab, (tokens,), generator=generator)
    if router.uses_token_counts:
        router.fit_token_counts(torch.ones(vocab))
    slots = router.num_experts if router.slot_per_expert else router.k
    for training in (True, False):
        mode = "training" if training else "evaluation"
        with torch.random.fork_rng(devices=[]):
            try:
                out = router.train(training)(x, token_ids)
            except Exception as error:  # noqa: BLE001  (whatever a plugin raises, the config check names it)
                raise ValueError(f"its forward pass failed in {mode} mode: {type(error).__name__}: {error}") from None
        problem = _output_problem(out, tokens, slots, router.num_experts, training and router.samples)
        if problem:
            raise ValueError(f"its forward pass in {mode} mode breaks the router interface: {problem}")


def _output_problem(out, tokens: int, slots: int, experts: int, samples: bool) -> str | None:
    if not isinstance(out, RouterOutput):
        return f"it returned a {type(out).__name__}, not a RouterOutput"
    shapes = {"experts": (out.experts, (tokens, slots)), "weights": (out.weights, (tokens, slots)),
              "probs": (out.probs, (tokens, experts))}
    if out.mask is not None:
        shapes["mask"] = (out.mask, (tokens, slots))
    for name, (value, shape) in shapes.items():
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            return f"{name} must be a tensor of shape {list(shape)}, got {getattr(value, 'shape', value)}"
    if out.experts.dtype != torch.long or out.experts.min() < 0 or out.experts.max() >= experts:
        return f"experts must hold int64 indices in [0, {experts})"
    if samples and (out.log_prob is None or tuple(out.log_prob.shape) != (tokens,)):
        return f"a router with samples = True must give log_prob of shape [{tokens}] while training"
    if not all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in out.aux_losses.values()):
        return "aux_losses must map names to scalar tensors"
    return None
