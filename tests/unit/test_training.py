"""E-step/M-step phases and the optimizer step."""
import pytest
import torch

from moe_rpo.routers import build_router
from moe_rpo.toy.fixed_experts import mix
from moe_rpo.training.step import E_STEP, JOINT, M_STEP, phase_at, train_step


def test_phase_schedule():
    assert [phase_at(s, None) for s in range(3)] == [JOINT] * 3
    assert [phase_at(s, (1, 1)) for s in range(4)] == [E_STEP, M_STEP, E_STEP, M_STEP]
    assert [phase_at(s, (2, 1)) for s in range(6)] == [E_STEP, E_STEP, M_STEP] * 2
    assert [phase_at(s, (1, 0)) for s in range(3)] == [E_STEP] * 3


def _setup(method):
    router = build_router({"method": method}, dim=1, num_experts=3, k=1)
    experts = torch.nn.Parameter(torch.randn(3, 2))
    optimizer = torch.optim.SGD([*router.parameters(), experts], lr=0.1)
    return router, experts, optimizer


def _step(router, experts, optimizer, phase, target=torch.tensor([1.0, -1.0])):
    before = [p.detach().clone() for p in router.parameters()], experts.detach().clone()
    train_step(router, optimizer, phase, torch.ones(8, 1),
               lambda out: ((mix(out, experts) - target) ** 2).sum(-1), other_params=[experts])
    router_moved = any(not torch.equal(b, p) for b, p in zip(before[0], router.parameters()))
    return router_moved, not torch.equal(before[1], experts)


@pytest.mark.parametrize("method", ["rpo", "em"])
def test_e_step_trains_only_the_router_and_m_step_only_the_rest(method):
    router, experts, optimizer = _setup(method)
    assert _step(router, experts, optimizer, E_STEP) == (True, False)
    assert _step(router, experts, optimizer, M_STEP) == (False, True)


def test_joint_step_trains_everything():
    router, experts, optimizer = _setup("softmax_topk")
    assert _step(router, experts, optimizer, JOINT) == (True, True)


def test_m_step_routes_greedily():
    router, experts, optimizer = _setup("rpo")
    seen = []
    train_step(router, optimizer, M_STEP, torch.ones(64, 1),
               lambda out: seen.append(out) or ((mix(out, experts)) ** 2).sum(-1), other_params=[experts])
    assert seen[0].log_prob is None and seen[0].experts.unique().numel() == 1


def test_non_finite_loss_stops_with_a_clear_error():
    router, experts, optimizer = _setup("softmax_topk")
    with pytest.raises(FloatingPointError, match="non-finite loss at step 7"):
        train_step(router, optimizer, JOINT, torch.ones(4, 1), lambda out: out.weights.sum(-1) * float("nan"),
                   other_params=[experts], step=7)
