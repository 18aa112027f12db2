"""Evaluation on fixed windows, the same for every method and seed: the mean loss, per MoE layer the routing
metrics, and the routes that the stability metrics (flip rate, saturation) follow through training."""
from __future__ import annotations

import numpy as np
import torch

from moe_rpo.models import GPT
from moe_rpo.routing_metrics import routing_metrics
from moe_rpo.training import distributed
from moe_rpo.training.batches import check_window_fits, windows
from moe_rpo.training.settings import TrainSettings

EVAL_SEED = 1234  # the evaluation windows are the same for every method and seed


STABILITY_TOKENS = 4096  # the evaluation tokens whose routes the stability metrics follow through training


def evaluation_batches(tokens: np.ndarray, settings: TrainSettings) -> list[list[int]]:
    """The start offsets of the fixed evaluation windows, one list per batch: the same for every method and seed."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    count, block = settings.eval_batches * settings.batch_size, settings.block_size
    check_window_fits(tokens, block)
    starts = torch.randint(len(tokens) - block - 1, (count,), generator=generator).tolist()
    return [starts[first:first + settings.batch_size] for first in range(0, count, settings.batch_size)]


@torch.no_grad()
def evaluate(model: GPT, tokens: np.ndarray, settings: TrainSettings, device: torch.device,
             world: distributed.World | None = None, label: str = "evaluation", routes: bool = False,
             observers=(), layer_metrics=routing_metrics) -> dict:
    """Mean loss on fixed windows of `tokens` and, per MoE layer, `layer_metrics` of its routing (greedy routing;
    routing_metrics.routing_metrics unless an experiment measures more).
    With `routes`, also "selection": [MoE layers, tokens, E] bool, the experts that the first STABILITY_TOKENS
    evaluation tokens were dispatched to (what the stability metrics compare between evaluations).
    Each of `observers` is called as observer(x, y, out) with each batch this process evaluates, on the device
    (more metrics from the same pass).
    With a data-parallel `world` (every rank must call it), the ranks share the evaluation batches and all
    return the numbers of one process."""
    model.eval()
    batches = evaluation_batches(tokens, settings)
    losses, layers, selections = [], [], []
    if world is not None and world.size > 1:
        batches = batches[world.rank::world.size]
    for starts in batches:
        x, y = (t.to(device) for t in windows(tokens, starts, settings.block_size))
        out = model(x, y)
        losses.append(out.loss.item())
        for observer in observers:
            observer(x, y, out)
        layers.append([layer_metrics(routing) for routing in out.routing])
        if routes and out.routing:
            selections.append(torch.stack([routing.selected() for routing in out.routing]).cpu())
    if world is not None and world.size > 1:  # back in batch order: rank r evaluated batches r, r + size, ...
        shares = distributed.gather((losses, layers, selections))
        losses, layers, selections = ([shares[i % world.size][part][i // world.size]
                                       for i in range(settings.eval_batches) if shares[i % world.size][part]]
                                      for part in range(3))
    result = {}
    if selections:
        result["selection"] = torch.cat(selections, dim=1)[:, :STABILITY_TOKENS]
    per_layer = [{key: np.mean([batch[i][key] for batch in layers], axis=0).tolist() for key in layers[0][i]}
                 for i in range(len(layers[0]))]
    if not np.isfinite(losses).all():  # e.g. the last step's update diverged: no such number may reach a record
        raise FloatingPointError(f"{label}: non-finite evaluation loss {losses}: the model's weights have diverged")
    return {"val_loss": float(np.mean(losses)), "layers": per_layer, **result}


def flip_rate(before: torch.Tensor, after: torch.Tensor) -> float:
    """Share of (MoE layer, token) pairs whose set of experts differs between two selections [L, N, E]."""
    return (before != after).any(-1).float().mean().item()


def saturation(selection: torch.Tensor, final: torch.Tensor) -> float:
    """Share of the final (token, expert) choices [L, N, E] that `selection` already makes (OLMoE's router
    saturation)."""
    return ((selection & final).sum() / final.sum().clamp(min=1)).item()
