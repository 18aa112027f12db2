"""MoE++ routing (Jin et al., ICLR 2025, arXiv 2410.07348; SkyworkAI/MoE-plus-plus): zero-computation experts
join the pool after the FFN experts, so that a token may use fewer FFN experts: zero experts E(x) = 0 (the token
skips that slot), copy experts E(x) = x, and constant experts E(x) = a1 x + a2 v with [a1, a2] = softmax(W_c x)
and a trained vector v. The router is Switch-style over the whole pool: top-k of softmax(x W_R), raw-probability
weights, balance loss alpha * E * sum_i f_i P_i over all E experts (the paper's heterogeneous balance and its
gating residuals, which pass the previous layer's logits on, are left out). The MoE layer builds the null
experts from `null_kinds` (models/null_experts.py). Defaults: one expert of each kind (the paper's 7B model
pairs 16 FFN with 1 zero, 1 copy and 2 constant experts). The toys mix fixed expert vectors with no token
features for a copy or constant expert to act on, so this router runs in recovery and the training experiments
only (the config refuses it in a toy; the benchmark's toy column says 'not run')."""
from __future__ import annotations

from moe_rpo.routers.options import Option

MAX_NULL_EXPERTS = 1024  # each kind: the paper pairs a few with 8-16 FFN experts; a billion would fill any memory
from moe_rpo.routers.switch import Switch


class MoEPlusPlus(Switch):
    adds_null_experts = True

    options = {"zero": Option("zero experts: E(x) = 0", minimum=0, maximum=MAX_NULL_EXPERTS),
               "copy": Option("copy experts: E(x) = x", minimum=0, maximum=MAX_NULL_EXPERTS),
               "constant": Option("constant experts: E(x) = a1 x + a2 v", minimum=0, maximum=MAX_NULL_EXPERTS),
               "balance_coef": Switch.options["balance_coef"],
               "init_std": Switch.options["init_std"]}

    def __init__(self, dim: int, num_experts: int, k: int, zero: int = 1, copy: int = 1, constant: int = 1,
                 balance_coef: float = 0.01, init_std: float = 0.01):
        kinds = ("zero",) * zero + ("copy",) * copy + ("constant",) * constant
        if not kinds:
            raise ValueError("MoE++ needs at least one zero, copy or constant expert")
        super().__init__(dim, num_experts + len(kinds), k, balance_coef=balance_coef, init_std=init_std)
        self.null_kinds = kinds
