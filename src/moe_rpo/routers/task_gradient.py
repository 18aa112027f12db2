"""Does a router learn from the task at all? A probe on random features, independent of any experiment.

Softmax top-1 with renormalised weights is the known case: its one weight is always 1, so the MoE output does
not depend on the router's parameters and the task loss gives them no gradient; what moves such a router is
its auxiliary losses, weight decay and optimiser noise. The probe finds every such router by its behaviour."""
from __future__ import annotations

import torch

from moe_rpo.routers import build_router

VOCAB = 50  # token ids of the probe (hash routers route by them)


def task_gradient(spec: dict, k: int, num_experts: int = 4, dim: int = 16, tokens: int = 64, seed: int = 0) -> bool | None:
    """Whether the router's parameters get a gradient that depends on the task: the gradient of the task loss
    plus the router's loss terms, for two different random regression targets on the same features, experts
    and sampled routes. Equal gradients (up to rounding): the router learns nothing from the task. None for a
    router without trainable parameters."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, dim, generator=gen)
    token_ids = torch.randint(0, VOCAB, (tokens,), generator=gen)
    with torch.random.fork_rng():
        pool = build_router(spec, dim, num_experts, k).num_experts  # MoE++ pools null experts after the FFN ones
    expert_outputs = torch.randn(tokens, pool, dim, generator=gen)
    gradients = []
    for target in torch.randn(2, tokens, dim, generator=gen):
        with torch.random.fork_rng():
            torch.manual_seed(seed)  # the same router and the same sampled routes for both targets
            router = build_router(spec, dim, num_experts, k).train()
            params = [p for p in router.parameters() if p.requires_grad]
            if not params:
                return None
            if router.uses_token_counts:
                router.fit_token_counts(torch.ones(VOCAB))
            out = router(x, token_ids)
        chosen = expert_outputs.gather(1, out.experts.unsqueeze(-1).expand(-1, -1, dim))  # [N, k, dim]
        weights = out.weights * out.active()
        task_loss = ((weights.unsqueeze(-1) * chosen).sum(1) - target).pow(2).mean(-1)
        total = task_loss.mean() + sum(router.loss_terms(out, task_loss).values(), torch.zeros(()))
        grads = torch.autograd.grad(total, params, allow_unused=True)
        gradients.append(torch.cat([torch.zeros(p.numel()) if g is None else g.flatten() for p, g in zip(params, grads)]))
    # rounding: w / w.sum() for one weight has a gradient of ~1e-9, a task gradient is ~1e-2 or more here
    return bool((gradients[0] - gradients[1]).abs().max() > 1e-6)
