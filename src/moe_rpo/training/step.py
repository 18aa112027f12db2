"""The phases of a routed model's optimizer steps, as the router's alternation prescribes them."""
from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from moe_rpo.routers import Router

JOINT, E_STEP, M_STEP = "joint", "E", "M"


def phase_at(step: int, alternation: tuple[int, int] | None) -> str:
    """The phase of `step`: "joint" without alternation, else "E" for the first e_steps of every
    (e_steps + m_steps) cycle and "M" for the rest."""
    if alternation is None:
        return JOINT
    e_steps, m_steps = alternation
    return E_STEP if step % (e_steps + m_steps) < e_steps else M_STEP


def phases_at(step: int, alternation: tuple[int, int] | None, schedule: str = "step") -> list[str]:
    """The optimizer steps of training step `step`, by phase. "step": one, in the phase phase_at gives (the
    phase flips with every optimizer step: RPO's pseudocode read literally). "iteration": one alternation cycle on
    the same batch, e_steps E-steps and then m_steps M-steps, so the experts train every iteration."""
    if alternation is None or schedule == "step":
        return [phase_at(step, alternation)]
    e_steps, m_steps = alternation
    return [E_STEP] * e_steps + [M_STEP] * m_steps


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
