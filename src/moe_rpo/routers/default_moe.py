"""Default MoE (Panda et al., 2025, "Dense Backpropagation Improves Training for Sparse Mixture-of-Experts",
arXiv 2504.12463): the router gets a dense gradient while the experts stay sparse. For every expert it keeps a
default vector, an exponential moving average of that expert's mean output over the tokens it processed
(updated in every training forward pass, decay beta = 0.95 as LibMoE's reimplementation, Fsoft-AIC/LibMoE); for
the experts a token did not use, p_e(x) * default_e stands in for p_e(x) * expert_e(x):
    y = sum over selected e of w_e expert_e(x) + sum over unselected e of p_e(x) default_e.
By default the second sum enters the router's gradient only (its value is subtracted again: the forward pass is
the standard router's); `in_forward` adds it to the forward pass too, as LibMoE does. The selection and the
weights are the standard router's (softmax top-k, raw probabilities). The default vectors live in the MoE layer's
output space, which is the router's input space in a GPT (C = n_embd). In the toys, which mix fixed expert
vectors without an MoE layer, nothing calls expert_feedback: there it routes as softmax_topk."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from moe_rpo.routers.base import RouterOutput
from moe_rpo.routers.options import Option
from moe_rpo.routers.softmax_topk import SoftmaxTopK


class DefaultMoE(SoftmaxTopK):
    options = {"decay": Option("beta of the default vectors' moving average", minimum=0, exclusive_maximum=1),
               "in_forward": Option("add the default vectors' term to the forward pass too (else: gradient only)"),
               **SoftmaxTopK.options}

    def __init__(self, dim: int, num_experts: int, k: int, decay: float = 0.95, in_forward: bool = False,
                 normalize: bool = False, init_std: float = 0.01):
        super().__init__(dim, num_experts, k, normalize=normalize, init_std=init_std)
        if not 0 <= decay < 1:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.decay, self.in_forward = decay, in_forward
        self.register_buffer("default_vectors", torch.zeros(num_experts, dim))

    def expert_feedback(self, out: RouterOutput, rows: torch.Tensor, expert_of_row: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._update_defaults(rows.detach().float(), expert_of_row)
        unused = out.probs * ~out.selected()
        term = unused @ self.default_vectors.to(unused.dtype)
        return term if self.in_forward else term - term.detach()

    @torch.no_grad()
    def _update_defaults(self, rows: torch.Tensor, expert_of_row: torch.Tensor) -> None:
        """default_e <- beta default_e + (1 - beta) mean of expert e's rows, for the experts that had rows."""
        one_hot = F.one_hot(expert_of_row, self.num_experts).to(rows.dtype)  # a matmul: no scatter atomics
        counts = one_hot.sum(0)
        means = (one_hot.T @ rows) / counts.clamp(min=1)[:, None]
        moved = self.decay * self.default_vectors + (1 - self.decay) * means
        self.default_vectors.copy_(torch.where((counts > 0)[:, None], moved, self.default_vectors))
