"""Language-model training: random windows of a token file, AdamW with warm-up and cosine decay, gradient
clipping, E/M alternation for routers that ask for it, periodic evaluation, and checkpoints that resume
exactly (model, optimiser, RNG and data position)."""
from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from moe_rpo.models import GPT
from moe_rpo.models.recovery import routing_metrics
from moe_rpo.training.step import M_STEP, phase_at, set_phase

EVAL_SEED = 1234  # the evaluation windows are the same for every method and seed


def pick_device(name: str) -> torch.device:
    """'auto': the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no GPU is available (use device: auto or cpu)")
    return torch.device(name)


class Batches:
    """Random windows [batch, block] of a token array and their next-token targets, from a seeded generator
    whose state is part of a checkpoint (the data position)."""

    def __init__(self, tokens: np.ndarray, batch_size: int, block_size: int, seed: int):
        if len(tokens) <= block_size + 1:
            raise ValueError(f"{len(tokens)} tokens are too few for windows of block_size={block_size}")
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.tokens) - self.block_size - 1, (self.batch_size,), generator=self.generator)
        return windows(self.tokens, starts.tolist(), self.block_size)


def windows(tokens: np.ndarray, starts: list[int], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.stack([np.asarray(tokens[s:s + block_size + 1], dtype=np.int64) for s in starts])
    return torch.from_numpy(np.ascontiguousarray(rows[:, :-1])), torch.from_numpy(np.ascontiguousarray(rows[:, 1:]))


def lr_at(step: int, settings: dict) -> float:
    """Linear warm-up, then cosine decay from lr to min_lr_ratio * lr at the last step."""
    lr, steps, warmup = settings["lr"], settings["steps"], settings["warmup_steps"]
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (settings["min_lr_ratio"] + (1 - settings["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(params: list[torch.nn.Parameter], settings: dict) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases and LayerNorm gains), as in nanoGPT."""
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": settings["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=settings["lr"], betas=tuple(settings["betas"]))


@torch.no_grad()
def evaluate(model: GPT, tokens: np.ndarray, settings: dict, device: torch.device) -> dict:
    """Mean loss on fixed windows of `tokens` and, per MoE layer, the routing metrics (greedy routing)."""
    model.eval()
    generator = torch.Generator().manual_seed(EVAL_SEED)
    count, block = settings["eval_batches"] * settings["batch_size"], settings["block_size"]
    starts = torch.randint(len(tokens) - block - 1, (count,), generator=generator).tolist()
    losses, layers = [], []
    for first in range(0, count, settings["batch_size"]):
        x, y = windows(tokens, starts[first:first + settings["batch_size"]], block)
        out = model(x.to(device), y.to(device))
        losses.append(out.loss.item())
        layers.append([routing_metrics(routing) for routing in out.routing])
    per_layer = [{key: np.mean([batch[i][key] for batch in layers], axis=0).tolist() for key in layers[0][i]}
                 for i in range(len(layers[0]))]
    return {"val_loss": float(np.mean(losses)), "layers": per_layer}


def any_samples(routers) -> bool:
    """Whether some router samples its decision while training (and so learns by REINFORCE)."""
    return any(getattr(router, "samples", False) for router in routers)


@torch.no_grad()
def greedy_loss(model: GPT, routers, x: torch.Tensor, y: torch.Tensor, autocast) -> torch.Tensor:
    """Per-token loss [B*T] when every router takes its greedy decision: a REINFORCE baseline that does
    not depend on the sampled routing and removes most of the token-to-token spread of the loss."""
    for router in routers:
        router.eval()
    with autocast:
        loss = model(x, y).token_loss.float()
    for router in routers:
        router.train()
    return loss


def _save(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train_lm(model: GPT, train_tokens: np.ndarray, val_tokens: np.ndarray, settings: dict, seed: int,
             checkpoint: str | Path | None = None, fingerprint: str = "", desc: str = "train") -> list[dict]:
    """Train the parameters of `model` that require grad; return the evaluation rows (step 0, every
    eval_every steps, and the last step). With `checkpoint`, the state is saved every checkpoint_every
    steps and a run restarted with the same fingerprint continues exactly where the saved one stopped.

    Routers with an alternation train in E-steps and the other trainable parameters in M-steps (the
    frozen router then routes greedily). When only routers train, every step is an E-step.
    """
    device = pick_device(settings["device"])
    model.to(device)
    torch.manual_seed(seed)
    batches = Batches(train_tokens, settings["batch_size"], settings["block_size"], seed)
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    routers = model.routers()
    router_ids = {id(p) for router in routers for p in router.parameters()}
    router_params = [p for p in trainable.values() if id(p) in router_ids]
    other_params = [p for p in trainable.values() if id(p) not in router_ids]
    alternation = routers[0].alternation if routers and router_params and other_params else None
    optimizer = make_optimizer(list(trainable.values()), settings)
    history, start, train_losses = [], 0, []

    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state["fingerprint"] == fingerprint:
            with torch.no_grad():
                for name, value in state["trainable"].items():
                    trainable[name].copy_(value)
            optimizer.load_state_dict(state["optimizer"])
            batches.generator.set_state(state["data_rng"])
            torch.set_rng_state(state["torch_rng"])
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"])
            history, start, train_losses = state["history"], state["step"], state["train_losses"]
            print(f"{desc}: resumed from {checkpoint} at step {start}", file=sys.stderr)
        else:
            print(f"{desc}: ignoring {checkpoint} (made with other settings)", file=sys.stderr)

    forward = torch.compile(model) if settings["compile"] else model
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if settings["bf16"] and device.type == "cuda"
                else contextlib.nullcontext())
    if start == 0:
        history.append({"step": 0, "train_loss": None, **evaluate(model, val_tokens, settings, device)})
    steps = range(start, settings["steps"])
    bar = tqdm(steps, desc=desc, total=settings["steps"], initial=start, file=sys.stderr,
               mininterval=0.5 if sys.stderr.isatty() else 15)
    for step in bar:
        phase = phase_at(step, alternation)
        model.train()
        set_phase(routers, router_params, other_params, phase)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, settings)
        x, y = (t.to(device) for t in batches.next())
        baseline = greedy_loss(model, routers, x, y, autocast) if (
            settings["reinforce_baseline"] == "greedy" and phase != M_STEP and any_samples(routers)) else None
        with autocast:
            out = forward(x, y)
            terms = {}
            for i, (router, routing) in enumerate(zip(routers, out.routing)):
                layer_terms = router.loss_terms(routing, out.token_loss, baseline)
                terms |= {f"layer{i}/{key}": value for key, value in layer_terms.items()}
            total = out.loss + sum(terms.values(), torch.zeros((), device=device))
        if not torch.isfinite(total):
            raise FloatingPointError(f"{desc}: non-finite loss at step {step} ({phase} phase): loss "
                                     f"{out.loss.item()}, terms { {k: v.item() for k, v in terms.items()} }")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(list(trainable.values()), settings["grad_clip"])
        optimizer.step()
        train_losses.append(out.loss.item())
        done = step + 1
        if done % settings["eval_every"] == 0 or done == settings["steps"]:
            row = {"step": done, "train_loss": float(np.mean(train_losses)),
                   **evaluate(model, val_tokens, settings, device)}
            history.append(row)
            train_losses = []
            bar.set_postfix(train=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}", refresh=False)
        if checkpoint and done % settings["checkpoint_every"] == 0 and done < settings["steps"]:
            _save(checkpoint, {"fingerprint": fingerprint, "step": done, "history": history,
                               "train_losses": train_losses, "optimizer": optimizer.state_dict(),
                               "trainable": {name: p.detach().clone() for name, p in trainable.items()},
                               "data_rng": batches.generator.get_state(), "torch_rng": torch.get_rng_state(),
                               "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None})
    for p in trainable.values():
        p.requires_grad_(True)
    model.eval()
    return history
