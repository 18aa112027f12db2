"""The router interface that every routing method implements."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from moe_rpo.routers.options import Option
from moe_rpo.routers.policy import reinforce_surrogate


@dataclass
class RouterOutput:
    """Everything a router decides for a batch of N tokens routed to k of E experts.

    experts:    [N, k] indices of the selected experts.
    weights:    [N, k] mixing weights of the selected experts.
    probs:      [N, E] selection probabilities (for metrics: load, entropy, routing accuracy).
    log_prob:   [N] log-probability of the sampled selection (and weights), or None when the
                router does not sample.
    aux_losses: named auxiliary losses, already scaled, to be added to the task loss.
    mask:       [N, k] bool, which slots are dispatched, or None when all are. Routers with a
                variable number of experts per token (capacity limits, expert choice) switch slots
                off; an inactive slot has weight 0, and a token with no active slot passes through
                the layer's residual connection unchanged.
    """

    experts: torch.Tensor
    weights: torch.Tensor
    probs: torch.Tensor
    log_prob: torch.Tensor | None = None
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    mask: torch.Tensor | None = None

    def active(self) -> torch.Tensor:
        """[N, k] bool: the dispatched slots."""
        return torch.ones_like(self.experts, dtype=torch.bool) if self.mask is None else self.mask

    def selected(self) -> torch.Tensor:
        """[N, E] bool: which experts each token was dispatched to."""
        chosen = torch.zeros(self.probs.shape, dtype=torch.bool, device=self.experts.device)
        return chosen.scatter(1, self.experts, self.active())

    def load(self) -> torch.Tensor:
        """[E] share of all dispatched (token, expert) pairs that went to each expert."""
        counts = count_experts(self.experts, self.probs.shape[-1], self.active())
        return counts / counts.sum().clamp(min=1)


def count_experts(experts: torch.Tensor, num_experts: int, active: torch.Tensor | None = None) -> torch.Tensor:
    """[E] int64: how often each expert id occurs in `experts` (where `active`). What torch.bincount gives,
    without its host sync on a GPU (it reads the largest id to size its output)."""
    hits = experts.unsqueeze(-1) == torch.arange(num_experts, device=experts.device)
    if active is not None:
        hits &= active.unsqueeze(-1)
    return hits.flatten(0, -2).sum(0)


class Router(nn.Module):
    """Maps token features [N, dim] to a RouterOutput.

    `alternation` is None for routers trained jointly with the rest of the model, or
    (e_steps, m_steps) for routers trained by E-step/M-step alternation: E-steps update only
    router parameters, M-steps only the rest. The class attributes below are its traits, which the tests
    and the config check read.
    """

    alternation: tuple[int, int] | None = None
    samples: bool = False  # True for routers that sample while training and learn by REINFORCE
    trainable: bool = True  # False for fixed routers (no trainable parameters: the routerless comparison)
    slot_per_expert: bool = False  # True: experts [N, E] = arange(E) and the mask picks a token's experts
    max_k: int | None = None  # the largest k it supports (None: any k up to the number of experts)
    batch_assignment: bool = False  # True: while training, experts are assigned over the batch, not per token
    random_selection: bool = False  # True: while training, the selection is drawn beyond the top k of probs, with no
    # log-probability (the gradient comes through the weights, not REINFORCE)
    options: dict[str, Option] = {}  # the constructor's config options: description and range (routers/options.py)
    adds_null_experts: bool = False  # True: its pool ends with zero-computation experts (MoE++), listed per instance
    null_kinds: tuple[str, ...] = ()  # in `null_kinds`, that the MoE layer builds after its FFN experts
    seed_batched: bool = False  # True: the toys may train one copy per seed as one batched computation
    # (torch.func.vmap over the copies' stacked parameters): pure tensor code, random numbers from
    # routers.noise, no state changed between steps (`update`). Tested per router (tests/unit/test_toy_seeds.py)

    def __init__(self, dim: int, num_experts: int, k: int):
        super().__init__()
        if not 1 <= k <= num_experts:
            raise ValueError(f"router k={k} must lie in [1, num_experts={num_experts}]")
        if self.max_k is not None and k > self.max_k:
            raise ValueError(f"{type(self).__name__} routes each token to at most {self.max_k} expert(s): "
                             f"k must be {self.max_k}, got k={k}")
        self.dim, self.num_experts, self.k = dim, num_experts, k

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        """x: [N, dim] token features; token_ids: [N] vocabulary ids where the model has them (hash
        routing needs them; the others ignore them)."""
        raise NotImplementedError

    uses_token_counts = False  # True for routers that need fit_token_counts before their first forward

    def fit_token_counts(self, counts: torch.Tensor) -> None:
        """Called once before training with the training corpus' token counts [vocab]; routers that
        depend on token frequencies (balanced hashing) build their tables here. Default: nothing."""

    def update(self, outputs: list[RouterOutput]) -> None:
        """Called once after every optimizer step with the outputs of that step's forward passes (one per
        micro-batch), so that state which follows the training rather than the gradient (a balancing bias, an
        adaptive coefficient) changes once per step, whatever the gradient accumulation. Such state lives in
        buffers, which checkpoints save. Default: nothing."""

    def expert_feedback(self, out: RouterOutput, rows: torch.Tensor, expert_of_row: torch.Tensor) -> torch.Tensor | None:
        """Called by the MoE layer with the experts' outputs: rows [R, C], the output of expert expert_of_row[r]
        for a dispatched (token, slot) pair, before its weight. A router may return a term [N, C] that the layer
        adds to its output (Default MoE: its default vectors). Default: None."""
        return None

    def loss_terms(self, out: RouterOutput, task_loss: torch.Tensor,
                   baseline: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Terms to add to the mean task loss: auxiliary losses and, for routers that sample,
        the REINFORCE surrogate whose gradient is the policy gradient with reward = -task_loss.

        task_loss: [N] per-token loss of the model output that used this routing.
        baseline:  [N] optional per-token REINFORCE baseline (default: leave-one-out batch mean).
        """
        terms = dict(out.aux_losses)
        if out.log_prob is not None:
            terms["policy"] = reinforce_surrogate(out.log_prob, task_loss, baseline)
        return terms
