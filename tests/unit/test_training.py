"""E-step/M-step phases and the optimizer step."""
import pytest
import torch

from moe_rpo.toy.fixed_experts import mix
from moe_rpo.toy.seeds import SeedRouters
from moe_rpo.training.step import E_STEP, JOINT, M_STEP, phase_at


def test_phase_schedule():
    assert [phase_at(s, None) for s in range(3)] == [JOINT] * 3
    assert [phase_at(s, (1, 1)) for s in range(4)] == [E_STEP, M_STEP, E_STEP, M_STEP]
    assert [phase_at(s, (2, 1)) for s in range(6)] == [E_STEP, E_STEP, M_STEP] * 2
    assert [phase_at(s, (1, 0)) for s in range(3)] == [E_STEP] * 3


def _setup(method, batched=None):
    routers = SeedRouters({"method": method}, [0, 1], dim=1, num_experts=3, k=1, batched=batched)
    experts = torch.randn(2, 3, 2).requires_grad_()  # one set of experts per seed
    optimizer = torch.optim.SGD([*routers.parameters(), experts], lr=0.1)
    return routers, experts, optimizer


def _loss(target=torch.tensor([1.0, -1.0]), scale=1.0, seen=None):
    def routed(router, experts):
        out = router(torch.ones(8, 1))
        if seen is not None:
            seen.append(out)
        return out, scale * ((mix(out, experts) - target) ** 2).sum(-1)
    return routed


def _step(routers, experts, optimizer, phase, **kwargs):
    before = [p.detach().clone() for p in routers.parameters()], experts.detach().clone()
    routers.step(optimizer, phase, _loss(**kwargs), routers.streams(8).next(), experts, other_params=[experts])
    router_moved = any(not torch.equal(b, p) for b, p in zip(before[0], routers.parameters()))
    return router_moved, not torch.equal(before[1], experts)


@pytest.mark.parametrize("method", ["rpo", "em"])
@pytest.mark.parametrize("batched", [None, False])
def test_e_step_trains_only_the_router_and_m_step_only_the_rest(method, batched):
    routers, experts, optimizer = _setup(method, batched)
    assert _step(routers, experts, optimizer, E_STEP) == (True, False)
    assert _step(routers, experts, optimizer, M_STEP) == (False, True)


def test_joint_step_trains_everything():
    routers, experts, optimizer = _setup("softmax_topk")
    assert _step(routers, experts, optimizer, JOINT) == (True, True)


def test_m_step_routes_greedily():
    routers, experts, optimizer = _setup("rpo", batched=False)
    seen = []
    _step(routers, experts, optimizer, M_STEP, seen=seen)
    assert all(out.log_prob is None and out.experts.unique().numel() == 1 for out in seen)


def test_non_finite_loss_stops_with_a_clear_error_naming_the_step_and_seeds():
    routers, experts, optimizer = _setup("softmax_topk")
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 7 \(joint phase\) for seeds \[0, 1\]"):
        routers.step(optimizer, JOINT, _loss(scale=float("nan")), routers.streams(8).next(), experts,
                     other_params=[experts], step=7)
