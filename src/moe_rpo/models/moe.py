"""A mixture-of-experts layer: a router sends each token to k of E experts and mixes their outputs; and the
metrics of a layer's routing (what the training loop reports per evaluation)."""
from __future__ import annotations

import torch
from torch import nn

from moe_rpo.models.experts import Experts
from moe_rpo.models.null_experts import NullExperts
from moe_rpo.routers import Router, RouterOutput


class MoE(nn.Module):
    """y(x) = sum over the k selected experts e of weight_e(x) * expert_e(x), computed sparsely:
    each expert runs only on the tokens routed to it (slots the router switched off are skipped).

    Dispatch without a host sync (for routers that switch no slot off and have no null experts): the (token, slot)
    pairs are sorted by expert (a stable sort), the tokens gathered once in that order, the experts run on their
    row groups (models/experts.py: grouped_mm on a GPU, one expert after another on the CPU), and each token's k
    outputs are put back in slot order and summed by a reshape, a fixed order of additions (no atomics: the same
    result on every run, on a GPU too).

    Three optional terms are added to that sum: shared experts that every token goes through (DeepSeekMoE), the
    null experts of a router that pools them after the FFN experts (MoE++, run densely: they cost no MLP), and
    whatever the router returns from the experts' outputs (Router.expert_feedback: Default MoE).

    The router always computes in float32 (or float64), outside any autocast (the Switch Transformer's selective
    precision): routing decisions and their log-probabilities stay exact under bf16 training."""

    def __init__(self, experts: list[nn.Module], router: Router, shared: nn.Module | None = None):
        """experts: GPT-2 MLPs, whose weights are copied into one stacked Experts module; shared: an MLP every
        token goes through besides its routed experts (DeepSeekMoE's shared experts), or None."""
        super().__init__()
        if len(experts) + len(router.null_kinds) != router.num_experts:
            raise ValueError(f"{len(experts)} experts and {len(router.null_kinds)} null experts, but the router "
                             f"chooses among {router.num_experts}")
        self.experts = Experts(experts)
        self.router = router
        # MoE++'s zero-computation experts, after the FFN experts in the router's pool
        self.null_experts = NullExperts(router.null_kinds, experts[0].c_fc.weight.shape[1]) if router.null_kinds else None
        self.shared = shared

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, RouterOutput]:
        """x: [B, T, C]; token_ids: [B, T] vocabulary ids, for routers that route by token."""
        B, T, C = x.size()
        tokens = x.reshape(B * T, C)
        with torch.autocast(x.device.type, enabled=False):
            routing = self.router(tokens.to(torch.promote_types(tokens.dtype, torch.float32)),  # float64 stays
                                  None if token_ids is None else token_ids.reshape(B * T))
        k, num_experts = routing.experts.shape[1], len(self.experts)
        expert_of_slot = routing.experts.reshape(-1)
        if routing.mask is not None:  # switched-off slots sort last, as a group no expert runs
            expert_of_slot = expert_of_slot.masked_fill(~routing.mask.reshape(-1), num_experts)
        if self.null_experts is not None:  # so do the null experts' slots: they run densely, below
            expert_of_slot = expert_of_slot.clamp(max=num_experts)
        expert_of_row, slot_of_row = expert_of_slot.sort(stable=True)
        ends = torch.searchsorted(expert_of_row, torch.arange(1, num_experts + 1, device=x.device))
        if routing.mask is not None or self.null_experts is not None:
            rows = int(ends[-1])  # the one host sync, for routers that switch slots off or use null experts
            expert_of_row, slot_of_row = expert_of_row[:rows], slot_of_row[:rows]
        expert_out = self.experts(tokens[slot_of_row.div(k, rounding_mode="floor")], expert_of_row, ends)
        out = expert_out * routing.weights.reshape(-1)[slot_of_row, None]
        y = out.new_zeros(B * T * k, C).index_copy(0, slot_of_row, out)  # back in slot order; off slots stay 0
        y = y.view(B * T, k, C).sum(1)
        if self.shared is not None:
            y = y + self.shared(tokens).to(y.dtype)
        if self.null_experts is not None:
            y = y + self.null_experts(tokens, null_weights(routing, num_experts, len(self.null_experts))).to(y.dtype)
        feedback = self.router.expert_feedback(routing, expert_out, expert_of_row)
        if feedback is not None:  # a term the router adds (Default MoE's default vectors)
            y = y + feedback.to(y.dtype)
        return y.view(B, T, C).to(x.dtype), routing


def null_weights(routing: RouterOutput, ffn_experts: int, null_experts: int) -> torch.Tensor:
    """[N, null_experts]: each token's routing weight on each null expert (pool index ffn_experts + j), summed
    over its active slots."""
    weights = routing.weights * routing.active()
    chosen = torch.nn.functional.one_hot(routing.experts, ffn_experts + null_experts).to(weights.dtype)
    return (chosen * weights.unsqueeze(-1)).sum(1)[:, ffn_experts:]
