"""One optimizer step of a routed model, in the phase the router's alternation prescribes."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from moe_rpo.routers import Router, RouterOutput

JOINT, E_STEP, M_STEP = "joint", "E", "M"


def phase_at(step: int, alternation: tuple[int, int] | None) -> str:
    """The phase of `step`: "joint" without alternation, else "E" for the first e_steps of every
    (e_steps + m_steps) cycle and "M" for the rest."""
    if alternation is None:
        return JOINT
    e_steps, m_steps = alternation
    return E_STEP if step % (e_steps + m_steps) < e_steps else M_STEP


def set_phase(routers: Iterable[Router], router_params: Iterable[nn.Parameter], other_params: Iterable[nn.Parameter],
              phase: str) -> None:
    """E-step: only router parameters train; M-step: only the rest, and the frozen routers act greedily
    (evaluation mode; sampling serves only the E-step's policy gradient); joint: everything."""
    for p in router_params:
        p.requires_grad_(phase != M_STEP)
    for p in other_params:
        p.requires_grad_(phase != E_STEP)
    for router in routers:
        router.train(phase != M_STEP)


def train_step(router: Router, optimizer: torch.optim.Optimizer, phase: str, router_input: torch.Tensor,
               task_loss_fn: Callable[[RouterOutput], torch.Tensor], other_params: Iterable[nn.Parameter] = (),
               step: int | None = None, token_ids: torch.Tensor | None = None) -> dict[str, float]:
    """Route `router_input`, compute the per-sample task loss, add the router's loss terms
    (auxiliary losses, REINFORCE surrogate) and take one optimizer step. Returns the loss terms.
    `token_ids` [N] go to the router with the input (hash routing routes by them).

    In an M-step the frozen router acts greedily (its policy's mode): sampling serves only the
    E-step's policy gradient. A phase with nothing to train (an M-step with fixed experts) takes no step.
    """
    set_phase([router], router.parameters(), other_params, phase)
    out = router(router_input, token_ids)
    task_loss = task_loss_fn(out)
    terms = router.loss_terms(out, task_loss)
    total = task_loss.mean() + sum(terms.values(), torch.zeros(()))
    if not torch.isfinite(total):
        where = "" if step is None else f" at step {step}"
        raise FloatingPointError(f"non-finite loss{where} ({phase} phase): task loss {task_loss.mean().item()}, "
                                 f"terms { {k: v.item() for k, v in terms.items()} }")
    optimizer.zero_grad(set_to_none=True)
    if total.requires_grad:
        total.backward()
        optimizer.step()
        if phase != M_STEP:
            router.update([out])
    return {"task_loss": task_loss.mean().item(), **{k: v.item() for k, v in terms.items()}}
