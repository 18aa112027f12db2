"""Many seeds of one toy configuration, trained side by side in one process.

Each seed has its own copy of the router, initialised as it would be alone (torch.manual_seed(seed) before it
is built), and its own stream of random numbers (routers.noise), so that a seed's numbers do not depend on
which seeds run beside it. Routers that declare `seed_batched` train as one batched computation: torch.func.vmap
over the copies' stacked parameters, one backward pass and one optimizer step for all seeds (the seeds share no
parameter, so each gets the gradient of its own loss). The other routers run seed after seed on the same streams.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap
from torch.utils._pytree import tree_map

from moe_rpo.routers import Router, build_router
from moe_rpo.routers.noise import drawing_from
from moe_rpo.toy.settings import ToySettings
from moe_rpo.training.step import M_STEP, set_phase

NOISE_SEED = 2**32  # a seed's stream starts at NOISE_SEED + seed, apart from the generator that initialises it
CHUNK = 64  # steps of random numbers drawn per seed at once


class SeedStreams:
    """Per step, `per_step` uniform numbers for every seed, each seed from its own generator: [S, per_step]."""

    def __init__(self, seeds: list[int], per_step: int):
        self.generators = [torch.Generator().manual_seed(NOISE_SEED + seed) for seed in seeds]
        self.per_step, self.step = per_step, 0

    def next(self) -> torch.Tensor:
        i = self.step % CHUNK
        if i == 0:
            self.chunk = torch.stack([torch.rand(CHUNK, self.per_step, generator=g) for g in self.generators])
        self.step += 1
        return self.chunk[:, i]


class SeedRouters:
    """One copy of a router per seed. `prepare(router)` runs on every copy after it is built (the toys set
    initial logits and token counts there). `batched`: None trains the copies batched where the router class
    declares `seed_batched`; False one after another (what the batched path is tested against)."""

    def __init__(self, spec: dict, seeds: list[int], dim: int, num_experts: int, k: int,
                 prepare: Callable[[Router], None] = lambda router: None, batched: bool | None = None):
        copies = []
        for seed in seeds:
            torch.manual_seed(seed)
            copies.append(build_router(spec, dim=dim, num_experts=num_experts, k=k))
            prepare(copies[-1])
        self.seeds, self.template = list(seeds), copies[0]
        self.alternation = self.template.alternation
        self.batched = self.template.seed_batched if batched is None else batched
        if self.batched:
            if not self.template.seed_batched or type(self.template).update is not Router.update:
                raise TypeError(f"{type(self.template).__name__} is not seed_batched (or changes state between steps): "
                                f"its seeds train one after another")
            self.params, self.buffers = stack_module_state(copies)
            self.copies = [self.template]  # the module the stacked parameters run through
        else:
            self.copies = copies

    def parameters(self) -> list[torch.Tensor]:
        if self.batched:
            return list(self.params.values())
        return [p for copy in self.copies for p in copy.parameters()]

    def train(self, mode: bool = True) -> None:
        for copy in self.copies:
            copy.train(mode)

    def map(self, fn: Callable, uniforms: torch.Tensor | None = None, *seed_args: torch.Tensor):
        """fn(router, *args) for every seed, its tensor results stacked over seeds. `router` routes like that
        seed's copy (a call returns its RouterOutput; loss_terms is the copy's), `uniforms` [S, M] are the
        seeds' random numbers for this call (None: it draws none), each of `seed_args` [S, ...] one seed's
        data per row."""
        if uniforms is None:
            uniforms = torch.empty(len(self.seeds), 0)
        if self.batched:
            def one(params, buffers, seed_uniforms, *args):
                with drawing_from(seed_uniforms):
                    return fn(_Stacked(self.template, params, buffers), *args)
            return vmap(one)(self.params, self.buffers, uniforms, *seed_args)
        results = []
        for s, copy in enumerate(self.copies):
            with drawing_from(uniforms[s]):
                results.append(fn(copy, *(arg[s] for arg in seed_args)))
        return tree_map(lambda *per_seed: torch.stack(per_seed), *results)

    def parameter(self, name: str) -> torch.Tensor:
        """One parameter of every seed's copy, [S, ...]."""
        if self.batched:
            return self.params[name]
        return torch.stack([dict(copy.named_parameters())[name] for copy in self.copies])

    def streams(self, samples: int) -> SeedStreams:
        """Random numbers for steps of `samples` routed samples: more than any router here draws per sample."""
        t = self.template
        return SeedStreams(self.seeds, 2 * samples * (t.num_experts + t.k + t.dim))

    def step(self, optimizer: torch.optim.Optimizer, phase: str, task_loss: Callable, uniforms: torch.Tensor,
             *seed_args: torch.Tensor, other_params=(), step: int | None = None) -> None:
        """One optimizer step of every seed in `phase`. task_loss(router, *args) routes one seed's inputs and
        returns (its RouterOutput, the per-sample loss [N]); the router's loss terms are added to the mean, and
        routers update once the step is taken."""
        set_phase(self.copies, self.parameters(), other_params, phase)
        outputs = []

        def seed_loss(router, *args):
            out, loss = task_loss(router, *args)
            if not self.batched:
                outputs.append(out)
            return loss.mean() + sum(router.loss_terms(out, loss).values(), torch.zeros(()))

        totals = self.map(seed_loss, uniforms, *seed_args)
        finite = torch.isfinite(totals)
        if not finite.all():
            bad = [seed for seed, ok in zip(self.seeds, finite.tolist()) if not ok]
            raise FloatingPointError(f"non-finite loss at step {step} ({phase} phase) for seeds {bad}")
        if not totals.requires_grad:  # nothing trains in this phase (an M-step with fixed experts)
            return
        optimizer.zero_grad(set_to_none=True)
        totals.sum().backward()
        optimizer.step()
        if phase != M_STEP:
            for copy, out in zip(self.copies, outputs):
                copy.update([out])


def over_seeds(name: str, values: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """A per-step series of every seed, [S, T, ...], as its mean, min and max over seeds (what the figures draw
    of all seeds; the records keep only the shown seeds' full series)."""
    values = np.asarray(values)
    return {f"{name}/mean": values.mean(0), f"{name}/min": values.min(0), f"{name}/max": values.max(0)}


class _Stacked:
    """One seed's view of the stacked copies inside vmap: called, it routes with that seed's parameters."""

    def __init__(self, template: Router, params: dict, buffers: dict):
        self.template, self.params, self.buffers = template, params, buffers

    def __call__(self, x: torch.Tensor, token_ids: torch.Tensor | None = None):
        return functional_call(self.template, (self.params, self.buffers), (x, token_ids))

    def loss_terms(self, out, task_loss):
        return self.template.loss_terms(out, task_loss)


def shown(settings: ToySettings, name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    """The full series of the seed the figures show (settings.shown_seed), if it ran: "seed{N}/name"."""
    seed = settings.shown_seed
    if seed not in settings.seeds:
        return {}
    return {f"seed{seed}/{name}": np.asarray(values[settings.seeds.index(seed)])}
