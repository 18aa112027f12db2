"""Training checkpoints that resume exactly: the trainable parameters, the routers' buffers, the optimiser and
every random stream (the data position, torch's and CUDA's, each rank's), written atomically and read safely."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from moe_rpo.io import atomic_path
from moe_rpo.training import distributed
from moe_rpo.training.batches import Batches


def fingerprint(**parts) -> str:
    """What a checkpoint must have been made with for a run to resume from it (the job's settings, seed, data, ...),
    as one string: another fingerprint means a fresh start."""
    return json.dumps(parts, sort_keys=True)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a training checkpoint atomically (tensors and plain types only: read_checkpoint loads it safely)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: Path, device: torch.device, desc: str) -> dict | None:
    """A training checkpoint, or None (with a warning naming it) when it is unreadable. weights_only: the
    file holds tensors and plain types only, so a swapped file cannot run code when it is read."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        problem = None if isinstance(state, dict) and "fingerprint" in state else "not a training checkpoint"
    except Exception as error:  # noqa: BLE001  (truncated, corrupt or unsafe: any of them means start afresh)
        state, problem = None, f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    if problem:
        print(f"{desc}: ignoring the unreadable checkpoint {path} ({problem}); training from step 0", file=sys.stderr)
        return None
    return state


def tensors_problem(saved: dict, expected: dict) -> str | None:
    """What is wrong with a checkpoint's tensors against the model's (parameters or router buffers): a name the
    model lacks, another shape or dtype, or a NaN or infinity; None when they fit."""
    for name, value in saved.items():
        if name not in expected:
            return f"{name} is not in the model"
        target = expected[name]
        if not isinstance(value, torch.Tensor) or value.shape != target.shape or value.dtype != target.dtype:
            return (f"{name} is {getattr(value, 'dtype', type(value).__name__)} {list(getattr(value, 'shape', []))}, "
                    f"the model's {target.dtype} {list(target.shape)}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            return f"{name} holds a NaN or an infinity"
    return None


@dataclass
class TrainState:
    """Where a run stands: the steps done, the evaluation rows so far and the training losses since the last
    evaluation. A checkpoint holds it with the trainable parameters, the routers' buffers, the optimiser and the
    random streams (data position, torch's and CUDA's, each rank's), so that a restored run continues exactly."""
    step: int = 0
    history: list = field(default_factory=list)
    train_losses: list = field(default_factory=list)
    routes: list = field(default_factory=list)  # each evaluation's selection (evaluate(routes=True)) of an MoE model

    def save(self, path: Path, fingerprint: str, trainable: dict, buffers: dict, optimizer, batches: Batches,
             device: torch.device, world: distributed.World) -> None:
        rng = torch.get_rng_state(), torch.cuda.get_rng_state() if device.type == "cuda" else None
        rank_rngs = distributed.gather(rng) if world.size > 1 else None  # every rank takes part; rank 0 writes
        if world.rank == 0:
            save_checkpoint(path, {
                "fingerprint": fingerprint, "step": self.step, "history": self.history,
                "train_losses": self.train_losses, "routes": self.routes,
                "optimizer": optimizer.state_dict() if optimizer else None,
                "trainable": {name: p.detach().clone() for name, p in trainable.items()},
                "buffers": {name: b.clone() for name, b in buffers.items()},
                "data_rng": batches.generator.get_state(), "torch_rng": rng[0], "cuda_rng": rng[1],
                **({"rank_rngs": rank_rngs} if rank_rngs else {})})

    @classmethod
    def restore(cls, path: Path | None, fingerprint: str, trainable: dict, buffers: dict, optimizer, batches: Batches,
                seed: int, device: torch.device, world: distributed.World, desc: str) -> TrainState:
        """The saved state, loaded into the parameters, optimiser and streams, or a fresh one when there is no
        readable checkpoint made with the same fingerprint."""
        saved = read_checkpoint(path, device, desc) if path and path.is_file() else None
        if saved is None:
            return cls()
        if saved["fingerprint"] != fingerprint:
            if world.rank == 0:
                print(f"{desc}: ignoring {path} (made with other settings)", file=sys.stderr)
            return cls()
        problem = tensors_problem(saved["trainable"], trainable) or tensors_problem(saved.get("buffers", {}), buffers)
        if problem:  # a corrupt checkpoint: named, set aside, and the run starts afresh
            if world.rank == 0:
                print(f"{desc}: ignoring the corrupt checkpoint {path} ({problem}); training from step 0",
                      file=sys.stderr)
            return cls()
        with torch.no_grad():
            for name, value in saved["trainable"].items():
                trainable[name].copy_(value)
            for name, value in saved.get("buffers", {}).items():  # none in checkpoints of older versions
                buffers[name].copy_(value)
        if optimizer is not None:
            optimizer.load_state_dict(saved["optimizer"])
        batches.generator.set_state(saved["data_rng"])
        rng = saved["torch_rng"], saved.get("cuda_rng")
        if world.size > 1:  # each rank's own stream (from a run with another number of ranks: a fresh one)
            ranks = saved.get("rank_rngs")
            if ranks and len(ranks) == world.size:
                rng = ranks[world.rank]
            elif world.rank:
                rng = None, None
        if rng[0] is None:
            torch.manual_seed(distributed.rank_seed(seed, world.rank, saved["step"]))
        else:
            torch.set_rng_state(rng[0])
        if device.type == "cuda" and rng[1] is not None:
            torch.cuda.set_rng_state(rng[1])
        if world.rank == 0:
            print(f"{desc}: resumed from {path} at step {saved['step']}", file=sys.stderr)
        return cls(saved["step"], saved["history"], saved["train_losses"], saved.get("routes", []))
