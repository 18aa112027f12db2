"""The per-token oracle of a recovery model: is expert 0 actually the best expert for the tokens it should get?

For every MoE layer and every expert e, the loss of each validation token when that layer sends every token
to e (weight 1) and the other MoE layers send every token to expert 0. From these:

- identifiability: the share of tokens for which expert 0 is strictly the best expert of the layer (a tie is
  not identifiable, as a tie is a miss in routing accuracy);
- oracle loss: the mean over tokens of the best expert's loss, per layer (exact for one MoE layer; with
  several it is the best one layer can do with the others on expert 0);
- expert-0 loss: every layer on expert 0, i.e. the pretrained model (the gap to the base model is the regret
  against it).

A method's route regret is its validation loss minus the oracle loss (the lowest over layers)."""
from __future__ import annotations

import numpy as np
import torch

from moe_rpo.models import GPT
from moe_rpo.models.moe import MoE
from moe_rpo.routers import Router, RouterOutput
from moe_rpo.routing_metrics import replaced_routers
from moe_rpo.training.batches import windows
from moe_rpo.training.evaluation import evaluation_batches
from moe_rpo.training.settings import TrainSettings


class FixedExpert(Router):
    """Sends every token to one expert with weight 1."""
    trainable = False

    def __init__(self, dim: int, num_experts: int, expert: int):
        super().__init__(dim, num_experts, 1)
        self.expert = expert

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        experts = torch.full((len(x), 1), self.expert, dtype=torch.long, device=x.device)
        probs = torch.nn.functional.one_hot(experts[:, 0], self.num_experts).to(x.dtype)
        return RouterOutput(experts=experts, weights=torch.ones(len(x), 1, dtype=x.dtype, device=x.device),
                            probs=probs)


def moe_layers(model: GPT) -> list[int]:
    return [i for i, block in enumerate(model.transformer.h) if isinstance(block.mlp, MoE)]


def fixed_routing(model: GPT, choice: dict[int, int]):
    """Within the block, MoE layer i sends every token to expert choice.get(i, 0)."""
    return replaced_routers(model, lambda i, router: FixedExpert(router.dim, router.num_experts, choice.get(i, 0)))


@torch.no_grad()
def token_losses(model: GPT, tokens: np.ndarray, settings: TrainSettings, device: torch.device) -> torch.Tensor:
    """[windows * block_size] per-token losses on the fixed evaluation windows (those `evaluate` averages)."""
    model.eval()
    losses = []
    for starts in evaluation_batches(tokens, settings):
        x, y = windows(tokens, starts, settings.block_size)
        losses.append(model(x.to(device), y.to(device)).token_loss.float().cpu())
    return torch.cat(losses)


def oracle(model: GPT, tokens: np.ndarray, settings: TrainSettings, device: torch.device) -> dict:
    """Identifiability, oracle loss and best-expert shares per MoE layer, and the all-expert-0 loss."""
    with fixed_routing(model, {}):
        expert0 = token_losses(model, tokens, settings, device)
    layers = []
    for i in moe_layers(model):
        num_experts = len(model.transformer.h[i].mlp.experts)
        per_expert = [expert0]
        for e in range(1, num_experts):
            with fixed_routing(model, {i: e}):
                per_expert.append(token_losses(model, tokens, settings, device))
        losses = torch.stack(per_expert)  # [E, tokens]
        best = losses.min(0)
        layers.append({"layer": i, "identifiability": (losses[0] < losses[1:].min(0).values).float().mean().item(),
                       "oracle_loss": best.values.mean().item(),
                       "best_expert_share": (torch.bincount(best.indices, minlength=num_experts) / best.indices.numel()
                                             ).tolist()})
    return {"expert0_loss": expert0.mean().item(), "layers": layers,
            "identifiability": float(np.mean([layer["identifiability"] for layer in layers])),
            "min_layer_identifiability": min(layer["identifiability"] for layer in layers),
            "oracle_loss": min(layer["oracle_loss"] for layer in layers)}
