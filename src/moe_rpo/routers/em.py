"""EM ablation: RPO's E-step/M-step alternation with ordinary gradients and no policy gradient."""
from __future__ import annotations

from moe_rpo.routers.options import Option
from moe_rpo.routers.softmax_topk import SoftmaxTopK


class EM(SoftmaxTopK):
    """Softmax top-k routing (weights = probabilities) trained by alternation: E-steps update only
    the router by backprop, M-steps only the rest of the model."""

    options = {**SoftmaxTopK.options, "e_steps": Option("router-only steps per cycle", minimum=1),
               "m_steps": Option("rest-of-model steps per cycle", minimum=0)}

    def __init__(self, dim: int, num_experts: int, k: int, normalize: bool = False, init_std: float = 0.01,
                 e_steps: int = 1, m_steps: int = 1):
        super().__init__(dim, num_experts, k, normalize=normalize, init_std=init_std)
        if e_steps < 1 or m_steps < 0:
            raise ValueError(f"EM needs e_steps >= 1 and m_steps >= 0, got {e_steps}, {m_steps}")
        self.alternation = (e_steps, m_steps)
