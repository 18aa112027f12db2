"""Data parallelism under `torchrun`: this process's place in the launch, the process group, the few
collectives that LM training needs besides DistributedDataParallel's gradient all-reduce, and the model wrapped in
DistributedDataParallel for the steps whose gradients it averages.

Outside torchrun (no WORLD_SIZE, or WORLD_SIZE=1) every helper is a no-op and there is one process of rank 0.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from moe_rpo.training.settings import TrainSettings
from moe_rpo.training.step import JOINT, M_STEP, set_phase


@dataclass(frozen=True)
class World:
    """rank: this process among all (0 writes the outputs); local_rank: among those of its node (its GPU);
    size: the number of processes."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1


def world() -> World:
    """This process's place in a torchrun launch, from the RANK, LOCAL_RANK and WORLD_SIZE that torchrun sets."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                 int(os.environ.get("WORLD_SIZE", 1)))


def is_main() -> bool:
    """Whether this process writes the outputs: rank 0 of a torchrun launch, or the only process."""
    return world().rank == 0


def setup(device: torch.device) -> tuple[World, torch.device]:
    """Join the launch's process group (once per process: gloo on the CPU, NCCL for CUDA tensors with gloo
    for CPU ones) and return (the world, this process's device): `cuda` becomes cuda:LOCAL_RANK, which is
    also made the current GPU, so that a later torch.device("cuda") means the same one."""
    here = world()
    if here.size == 1:
        return here, device
    if device.type == "cuda":
        torch.cuda.set_device(here.local_rank)
        device = torch.device("cuda", here.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
        atexit.register(teardown)
    elif dist.get_world_size() != here.size:
        raise RuntimeError(f"the process group has {dist.get_world_size()} processes but WORLD_SIZE={here.size}")
    return here, device


def teardown() -> None:
    """Leave the process group (at exit; safe to call when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int, *more: int) -> int:
    """The seed of rank `rank`'s own random stream (sampled routing, dropout): `seed` itself on rank 0, so
    that one process is unchanged, and an unrelated stream on every other rank."""
    if rank == 0 and not more:
        return seed
    return int(np.random.SeedSequence([seed, rank, *more]).generate_state(1, np.uint64)[0] >> 1)


def sum_(tensor: torch.Tensor) -> torch.Tensor:
    """In place: the sum of `tensor` over all ranks (gloo has no AVG; callers divide)."""
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(params: list[torch.nn.Parameter], size: int) -> None:
    """Average the gradients of `params` over all ranks, as DistributedDataParallel(find_unused_parameters=True)
    does: a rank where a parameter got no gradient contributes zeros, and a parameter that got none on any
    rank keeps grad None (so that AdamW leaves it alone, as in one process). One all-reduce per dtype."""
    by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
    for p in params:
        by_dtype.setdefault(p.dtype, []).append(p)
    for group in by_dtype.values():
        device = group[0].device
        used = torch.tensor([p.grad is not None for p in group], dtype=group[0].dtype, device=device)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group]
                         + [used])
        sum_(flat)
        flat[:-len(group)].div_(size)
        offset = 0
        for p, count in zip(group, flat[-len(group):].tolist()):
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone() if count > 0 else None
            offset += n


def gather(obj) -> list:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    objects = [None] * dist.get_world_size()
    dist.all_gather_object(objects, obj)
    return objects


def data_parallel(model: torch.nn.Module, routers, router_params, other_params, alternation, device: torch.device,
                  settings: TrainSettings) -> torch.nn.Module:
    """The model wrapped in DistributedDataParallel, for the steps whose gradients it averages.

    DDP builds its reducer once, over the parameters that require grad when it is wrapped, and does not
    support a change of that set in the steps it runs; E/M alternation toggles requires_grad. So with an
    alternation DDP is built over the M-step's parameters (everything but the routers), with the
    requires_grad of an M-step, and runs only M-steps, which keep that set. E-steps call the bare model
    (DDP is not involved: its reducer expects gradients only after a forward through it) and train_lm
    averages their gradients, those of the small router parameters, with one all-reduce. Each step thus
    trains the same parameters on the averaged gradient of the global batch, as in one process, and
    E-steps skip the backward and the communication of the frozen experts (with RPO the whole backward
    through the network). Without an alternation DDP holds every trainable parameter and runs every step.

    find_unused_parameters: in an MoE model an expert that no token of a rank's rows chose gets no
    gradient on that rank (and a router can have parameters that a step does not use, or none at all);
    DDP then counts zeros for it, and a parameter unused on every rank keeps grad None, so that AdamW
    skips it (no momentum or weight-decay update) exactly as in one process. A dense model uses every
    parameter, so it skips the search for unused ones.
    """
    set_phase(routers, router_params, other_params, JOINT if alternation is None else M_STEP)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                  find_unused_parameters=bool(routers))
    return torch.compile(ddp) if settings.compile else ddp
