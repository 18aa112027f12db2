"""Policy-gradient helpers shared by the routers that sample (RL, RPO); they draw through routers/noise.py."""
from __future__ import annotations

import torch


def selection_log_prob(log_probs: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Log-probability [N] of the ordered sample `experts` [N, k] drawn without replacement
    from the categorical with log-probabilities `log_probs` [N, E]."""
    chosen = log_probs.gather(-1, experts)
    k = experts.shape[-1]
    # probability mass taken by the earlier picks: an exclusive prefix sum, as a matmul with a strictly upper
    # triangular matrix because CUDA's floating-point cumsum has no deterministic kernel
    taken_before = chosen.exp() @ torch.ones(k, k, dtype=chosen.dtype, device=chosen.device).triu(1)
    return (chosen - torch.log1p(-taken_before.clamp(max=1 - 1e-6))).sum(-1)


def leave_one_out_baseline(values: torch.Tensor) -> torch.Tensor:
    """Per-sample baseline: the mean of the other samples (keeps REINFORCE unbiased)."""
    n = values.numel()
    if n < 2:
        return torch.zeros_like(values)
    return (values.sum() - values) / (n - 1)


def reinforce_surrogate(log_prob: torch.Tensor, task_loss: torch.Tensor,
                        baseline: torch.Tensor | None = None) -> torch.Tensor:
    """Surrogate whose gradient is the REINFORCE estimate of grad E[task_loss].

    The reward is -task_loss. The baseline is a per-sample value that does not depend on the sampled
    action (e.g. the loss under the router's greedy decision); without one, the leave-one-out mean
    over the batch is used.
    """
    if log_prob.shape != task_loss.shape:
        raise ValueError(f"log_prob {tuple(log_prob.shape)} and task_loss {tuple(task_loss.shape)} must match")
    loss = task_loss.detach()
    if baseline is None:
        baseline = leave_one_out_baseline(loss)
    elif baseline.shape != loss.shape:
        raise ValueError(f"baseline {tuple(baseline.shape)} and task_loss {tuple(loss.shape)} must match")
    return ((loss - baseline.detach()) * log_prob).mean()
