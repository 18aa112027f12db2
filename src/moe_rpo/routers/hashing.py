"""Hash routing (Roller et al., 2021, Hash Layers): each token id goes to fixed experts, whatever its features.

random:   expert scores h_e(id) = (a_e * id + b_e) mod p with p = 2^31 - 1 and a_e, b_e drawn once from the
          torch RNG (deterministic per seed); the token goes to the k experts of highest score (for k = 1,
          a uniform random hash of the id; for k > 1, k distinct experts).
balanced: `fit_token_counts` assigns token ids, most frequent first, to the k currently least-loaded
          experts (load = summed frequency of the ids given to it; ties to the lower index).
Weights are 1/k; probs put 1/k on each selected expert. No trainable parameters."""
from __future__ import annotations

import heapq
from typing import Literal, get_args

import torch

from moe_rpo.routers.base import Router, RouterOutput
from moe_rpo.routers.options import Option

PRIME = 2**31 - 1
Mode = Literal["random", "balanced"]  # the config schema reads the choices from this hint
MODES = get_args(Mode)


class Hash(Router):
    trainable = False

    options = {"mode": Option("a fixed random hash of the token id, or a table balancing token frequencies over "
                              "the experts")}

    def __init__(self, dim: int, num_experts: int, k: int, mode: Mode = "random"):
        super().__init__(dim, num_experts, k)
        if mode not in MODES:
            raise ValueError(f"hash routing mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        if mode == "random":
            self.register_buffer("coef", torch.randint(1, PRIME, (2, num_experts)))
        else:
            self.register_buffer("table", torch.empty(0, k, dtype=torch.long))

    @property
    def uses_token_counts(self) -> bool:
        return self.mode == "balanced"

    def fit_token_counts(self, counts: torch.Tensor) -> None:
        if self.mode != "balanced":
            return
        heap = [(0, e) for e in range(self.num_experts)]  # (load, expert)
        table, frequency = [None] * len(counts), counts.tolist()
        for token in counts.argsort(descending=True, stable=True).tolist():
            chosen = [heapq.heappop(heap) for _ in range(self.k)]
            table[token] = [e for _, e in chosen]
            for load, e in chosen:
                heapq.heappush(heap, (load + frequency[token], e))
        self.table = torch.tensor(table, dtype=torch.long, device=self.table.device).view(-1, self.k)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A saved balanced table replaces the empty one of a freshly built router (checkpoints reload)."""
        if prefix + "table" in state_dict:
            self.table = torch.empty_like(state_dict[prefix + "table"], device=self.table.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        if token_ids is None:
            raise ValueError("hash routing routes by token id: call the router with token_ids")
        if self.mode == "balanced":
            if not len(self.table):
                raise ValueError("balanced hash routing needs fit_token_counts(counts) before the first forward")
            experts = self.table[token_ids]
        else:
            a, b = self.coef
            experts = ((token_ids[:, None] * a + b) % PRIME).topk(self.k, dim=-1).indices
        weights = torch.full(experts.shape, 1 / self.k, dtype=x.dtype, device=x.device)
        probs = torch.zeros(len(x), self.num_experts, dtype=x.dtype, device=x.device).scatter(1, experts, weights)
        return RouterOutput(experts=experts, weights=weights, probs=probs)
