"""A mixture-of-experts layer: a router sends each token to k of E experts and mixes their outputs; and the
metrics of a layer's routing (what the training loop reports per evaluation)."""
from __future__ import annotations

import torch
from torch import nn

from moe_rpo.routers import Router, RouterOutput


class MoE(nn.Module):
    """y(x) = sum over the k selected experts e of weight_e(x) * expert_e(x), computed sparsely:
    each expert runs only on the tokens routed to it (slots the router switched off are skipped).

    The router always computes in float32 (or float64), outside any autocast (the Switch Transformer's selective
    precision): routing decisions and their log-probabilities stay exact under bf16 training."""

    def __init__(self, experts: list[nn.Module], router: Router):
        super().__init__()
        if len(experts) != router.num_experts:
            raise ValueError(f"{len(experts)} experts but the router chooses among {router.num_experts}")
        self.experts = nn.ModuleList(experts)
        self.router = router

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, RouterOutput]:
        """x: [B, T, C]; token_ids: [B, T] vocabulary ids, for routers that route by token."""
        B, T, C = x.size()
        tokens = x.reshape(B * T, C)
        with torch.autocast(x.device.type, enabled=False):
            routing = self.router(tokens.to(torch.promote_types(tokens.dtype, torch.float32)),  # float64 stays
                                  None if token_ids is None else token_ids.reshape(B * T))
        # one row per dispatched (token, selected expert) slot, grouped by expert
        slots = routing.active().reshape(-1).nonzero().squeeze(1)
        expert_of_row = routing.experts.reshape(-1)[slots]
        order = expert_of_row.argsort(stable=True)
        expert_of_row = expert_of_row[order]
        token_of_row = slots[order].div(routing.experts.shape[1], rounding_mode="floor")
        weight_of_row = routing.weights.reshape(-1)[slots[order], None]
        rows_per_expert = torch.bincount(expert_of_row, minlength=len(self.experts)).tolist()
        y = torch.zeros_like(tokens)
        start = 0
        for expert, count in zip(self.experts, rows_per_expert):
            if count:
                rows = token_of_row[start:start + count]
                out = weight_of_row[start:start + count] * expert(tokens.index_select(0, rows))
                y.index_add_(0, rows, out.to(y.dtype))
            start += count
        return y.view(B, T, C), routing


@torch.no_grad()
def routing_metrics(out: RouterOutput) -> dict[str, float | list[float]]:
    """accuracy: share of tokens whose most probable expert is expert 0 (the pretrained MLP), strictly:
    a tie is no choice (a zero-initialised router would otherwise score 1 through argmax's tie-break);
    entropy: mean over tokens of the entropy (nats) of the router's probabilities;
    load: share of all dispatched (token, expert) pairs that went to each expert;
    unrouted: share of tokens with no dispatched expert (capacity limits, expert choice)."""
    first_is_best = out.probs[:, 0] > out.probs[:, 1:].max(-1).values
    return {
        "accuracy": first_is_best.float().mean().item(),
        "entropy": torch.special.entr(out.probs).sum(-1).mean().item(),
        "load": out.load().tolist(),
        "unrouted": (~out.active().any(-1)).float().mean().item(),
    }
