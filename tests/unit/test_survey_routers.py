"""The survey's routers against their papers' formulas: Switch capacity, router z-loss, hash layers, a fixed
random router, DSelect-k, BASE layers and expert choice; and each of them inside a GPT."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from moe_rpo.models import GPT, GPTConfig, MoE
from moe_rpo.models.gpt import MLP
from moe_rpo.routers import METHODS, build_router
from moe_rpo.routers.base_layers import balanced_assignment
from moe_rpo.routers.dselect_k import smooth_step
from moe_rpo.routers.switch import dropped_fraction


def mlp_experts(num_experts, dim, seed=0):
    """GPT-2 MLPs whose outputs are never zero (an output bias of 1)."""
    torch.manual_seed(seed)
    mlps = [MLP(GPTConfig(n_embd=dim)) for _ in range(num_experts)]
    for mlp in mlps:
        torch.nn.init.ones_(mlp.c_proj.bias)
    return mlps


def one_hot_router(spec, num_experts, k):
    """A router over dim = E features whose logits are 10 * x: one-hot inputs choose their expert."""
    router = build_router(spec, num_experts, num_experts, k)
    with torch.no_grad():
        router.gate.weight.copy_(10 * torch.eye(num_experts))
    return router


# ---- Switch capacity factor (Fedus et al., 2021) ----

def test_switch_capacity_admits_the_first_tokens_of_each_expert():
    choice = torch.tensor([0, 1, 0, 0, 2, 0, 1, 0, 3, 3])  # expert 0 is wanted by 5 of 10 tokens
    router = one_hot_router({"method": "switch", "capacity_factor": 1.0}, 4, 1)
    out = router(torch.eye(4)[choice])
    capacity = math.ceil(1.0 * 10 * 1 / 4)  # 3
    assert torch.equal(out.experts[:, 0], choice)
    expected = torch.tensor([True, True, True, True, True, False, True, False, True, True])  # 4th, 5th of expert 0 drop
    assert torch.equal(out.mask[:, 0], expected)
    assert torch.bincount(choice[out.mask[:, 0]], minlength=4).max() == capacity
    assert (out.weights[~out.mask] == 0).all()
    torch.testing.assert_close(out.weights[out.mask], out.probs.gather(1, out.experts)[out.mask])
    torch.testing.assert_close(dropped_fraction(out), torch.tensor(0.2))


def test_switch_capacity_admits_first_choices_before_second_choices():
    router = build_router({"method": "switch", "capacity_factor": 0.5}, 4, 4, 2)
    with torch.no_grad():
        router.gate.weight.copy_(torch.eye(4))
    x = torch.tensor([[3.0, 2.0, 0, 0], [0, 3.0, 2.0, 0], [2.0, 3.0, 0, 0], [0, 2.0, 3.0, 0]])
    out = router(x)  # selections (first, second): (0, 1), (1, 2), (1, 0), (2, 1); capacity ceil(0.5 * 8 / 4) = 1
    assert out.experts.tolist() == [[0, 1], [1, 2], [1, 0], [2, 1]]
    # queue order: first choices 0, 1, 1, 2 (tokens 0..3), then second choices 1, 2, 0, 1
    assert out.mask.tolist() == [[True, False], [True, False], [False, False], [True, False]]


def test_switch_dropped_tokens_pass_through_with_zero_moe_output():
    choice = torch.tensor([2, 2, 2, 1, 2, 0])
    experts = mlp_experts(4, 4)
    layer = MoE(experts, one_hot_router({"method": "switch", "capacity_factor": 1.0}, 4, 1))
    x = torch.eye(4)[choice]
    y, out = layer(x[None])
    dropped = ~out.mask[:, 0]
    assert dropped.tolist() == [False, False, True, False, True, False]  # capacity ceil(6 / 4) = 2
    assert (y[0, dropped] == 0).all() and (y[0, ~dropped] != 0).any(-1).all()
    expected = torch.stack([out.weights[i, 0] * experts[int(choice[i])](x[i]) for i in range(6)])
    torch.testing.assert_close(y[0], expected)


def test_switch_balance_loss_is_unchanged_by_the_capacity():
    x = torch.randn(40, 6)
    torch.manual_seed(1)
    unlimited = build_router({"method": "switch"}, 6, 5, 2)
    torch.manual_seed(1)
    limited = build_router({"method": "switch", "capacity_factor": 0.5}, 6, 5, 2)
    a, b = unlimited(x), limited(x)
    assert a.mask is None and not b.mask.all()
    f = torch.bincount(b.experts.reshape(-1), minlength=5) / b.experts.numel()  # all selections, dropped or not
    torch.testing.assert_close(b.aux_losses["balance"], 0.01 * 5 * (f * b.probs.mean(0)).sum())
    torch.testing.assert_close(a.aux_losses["balance"], b.aux_losses["balance"])


# ---- router z-loss (Zoph et al., 2022) ----

def test_z_loss_matches_a_hand_computation():
    router = build_router({"method": "zloss", "z_loss_coef": 0.1, "balance_coef": 0.0}, 2, 3, 1)
    with torch.no_grad():
        router.gate.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]]))
    x = [[1.0, 1.0], [2.0, -1.0]]
    logits = [[1.0, 2.0, 0.0], [2.0, -2.0, 3.0]]
    expected = 0.1 * sum(math.log(sum(math.exp(v) for v in row)) ** 2 for row in logits) / 2
    out = router(torch.tensor(x))
    torch.testing.assert_close(out.aux_losses["z_loss"], torch.tensor(expected))
    assert out.aux_losses["balance"] == 0
    assert out.experts[:, 0].tolist() == [1, 2]


def test_z_loss_gradient_shrinks_the_logits():
    router = build_router({"method": "zloss", "z_loss_coef": 0.1, "init_std": 1.0}, 6, 4, 1)
    logits = (3 + torch.randn(8, 4)).requires_grad_()
    router.route_logits = lambda x: logits
    router(torch.randn(8, 6)).aux_losses["z_loss"].backward()
    lse = torch.logsumexp(logits.detach(), -1, keepdim=True)
    torch.testing.assert_close(logits.grad, 0.1 * 2 * lse * torch.softmax(logits.detach(), -1) / 8)
    assert (logits.grad > 0).all(), "with logsumexp > 0, a gradient step lowers every logit"
    del router.route_logits
    x = torch.randn(64, 6)
    before = router.gate(x).detach()
    for _ in range(20):  # gradient descent on the z-loss alone, through the gate
        router.gate.weight.grad = None
        router(x).aux_losses["z_loss"].backward()
        with torch.no_grad():
            router.gate.weight -= 0.5 * router.gate.weight.grad
    after = router.gate(x).detach()
    assert torch.logsumexp(after, -1).square().mean() < 0.5 * torch.logsumexp(before, -1).square().mean()
    assert after.norm() < before.norm()


def test_z_loss_router_routes_like_switch():
    x = torch.randn(20, 6)
    torch.manual_seed(2)
    switch = build_router({"method": "switch", "capacity_factor": 1.0}, 6, 4, 2)
    torch.manual_seed(2)
    zloss = build_router({"method": "zloss", "capacity_factor": 1.0}, 6, 4, 2)
    a, b = switch(x), zloss(x)
    assert torch.equal(a.experts, b.experts) and torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.weights, b.weights)
    torch.testing.assert_close(a.aux_losses["balance"], b.aux_losses["balance"])


# ---- hash layers (Roller et al., 2021) ----

def test_random_hash_is_deterministic_per_seed_and_ignores_features():
    ids = torch.arange(1000)
    torch.manual_seed(3)
    first = build_router({"method": "hash"}, 6, 4, 1)
    torch.manual_seed(3)
    again = build_router({"method": "hash"}, 6, 4, 1)
    torch.manual_seed(4)
    other = build_router({"method": "hash"}, 6, 4, 1)
    out = first(torch.randn(1000, 6), ids)
    assert torch.equal(out.experts, again(torch.randn(1000, 6), ids).experts)
    assert not torch.equal(out.experts, other(torch.zeros(1000, 6), ids).experts)
    assert torch.equal(first(torch.zeros(1000, 6), ids).experts, out.experts), "features must not matter"
    assert torch.equal(first(torch.zeros(3, 6), ids[[7, 7, 7]]).experts, out.experts[[7, 7, 7]])
    assert list(first.parameters()) == []
    load = torch.bincount(out.experts[:, 0], minlength=4) / 1000
    assert (load - 0.25).abs().max() < 0.06, load


def test_random_hash_picks_k_distinct_experts_with_equal_weights():
    router = build_router({"method": "hash"}, 6, 5, 3)
    out = router(torch.randn(200, 6), torch.arange(200))
    assert all(len(set(row)) == 3 for row in out.experts.tolist())
    torch.testing.assert_close(out.weights, torch.full((200, 3), 1 / 3))
    expected = torch.zeros(200, 5).scatter(1, out.experts, 1 / 3)
    torch.testing.assert_close(out.probs, expected)


@pytest.mark.parametrize("counts, k, table", [
    ([3, 10, 1, 7, 2, 5], 1, [[0], [0], [0], [1], [1], [1]]),  # ids by frequency 1, 3, 5, 0, 4, 2 -> 0, 1, 1, 0, 1, 0
    ([4, 3, 2], 2, [[0, 1], [2, 0], [2, 1]]),  # E = 3: the two least-loaded experts, ties to the lower index
])
def test_balanced_hash_matches_a_hand_example(counts, k, table):
    experts = 2 if k == 1 else 3
    router = build_router({"method": "hash", "mode": "balanced"}, 6, experts, k)
    router.fit_token_counts(torch.tensor(counts))
    assert router.table.tolist() == table
    out = router(torch.randn(len(counts), 6), torch.arange(len(counts)))
    assert out.experts.tolist() == table
    torch.testing.assert_close(out.weights, torch.full((len(counts), k), 1 / k))


def test_balanced_hash_is_at_least_as_balanced_as_random_on_the_fitted_counts():
    vocab, experts = 500, 4
    counts = (1e5 / torch.arange(1, vocab + 1)).long()  # Zipf
    ids = torch.arange(vocab)

    def max_load_ratio(router):
        load = torch.zeros(experts).index_add_(0, router(torch.zeros(vocab, 6), ids).experts[:, 0], counts.float())
        return (experts * load.max() / load.sum()).item()

    balanced = build_router({"method": "hash", "mode": "balanced"}, 6, experts, 1)
    balanced.fit_token_counts(counts)
    assert max_load_ratio(balanced) <= max_load_ratio(build_router({"method": "hash"}, 6, experts, 1))
    assert max_load_ratio(balanced) < 1.3  # the most frequent id alone carries ~15% of the mass


def test_balanced_hash_table_survives_a_state_dict_round_trip():
    router = build_router({"method": "hash", "mode": "balanced"}, 6, 4, 2)
    router.fit_token_counts(torch.randint(0, 100, (30,)))
    fresh = build_router({"method": "hash", "mode": "balanced"}, 6, 4, 2)
    fresh.load_state_dict(router.state_dict())
    ids = torch.arange(30)
    assert torch.equal(fresh(torch.zeros(30, 6), ids).experts, router(torch.zeros(30, 6), ids).experts)


def test_hash_errors_are_clear():
    balanced = build_router({"method": "hash", "mode": "balanced"}, 6, 4, 1)
    with pytest.raises(ValueError, match="fit_token_counts"):
        balanced(torch.randn(3, 6), torch.arange(3))
    for router in (balanced, build_router({"method": "hash"}, 6, 4, 1)):
        with pytest.raises(ValueError, match="token_ids"):
            router(torch.randn(3, 6))
    with pytest.raises(ValueError, match="mode"):
        build_router({"method": "hash", "mode": "sorted"}, 6, 4, 1)


# ---- fixed random router (routerless baseline) ----

def test_fixed_random_router_is_frozen_seeded_and_feature_dependent():
    torch.manual_seed(5)
    router = build_router({"method": "fixed_random"}, 64, 4, 2)
    torch.manual_seed(5)
    again = build_router({"method": "fixed_random"}, 64, 4, 2)
    assert list(router.parameters()) == [] and "projection" in dict(router.named_buffers())
    x = torch.randn(500, 64)
    out = router(x)
    assert torch.equal(out.experts, again(x).experts)
    torch.testing.assert_close(out.probs, torch.softmax(x @ router.projection.T, -1))
    logit_std = (x @ router.projection.T).std().item()
    assert 0.8 < logit_std < 1.2, "init_std = 1 gives unit-std logits for unit-variance features"
    assert len(set(out.experts[:, 0].tolist())) == 4, "routing depends on the features"
    assert not torch.equal(router(torch.randn(500, 64)).experts, out.experts)


# ---- DSelect-k (Hazimeh et al., 2021) ----

def test_smooth_step_formula_saturation_and_smoothness():
    gamma = 2.0
    t = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    expected = [0.0, 0.0, -2 * -0.125 / 8 + 3 * -0.5 / 4 + 0.5, 0.5, -2 * 0.125 / 8 + 3 * 0.5 / 4 + 0.5, 1.0, 1.0]
    torch.testing.assert_close(smooth_step(t, gamma), torch.tensor(expected, dtype=torch.float64))
    for edge in (-gamma / 2, gamma / 2):  # the derivative is continuous (zero) where the cubic meets 0 and 1
        points = torch.tensor([edge - 1e-6, edge + 1e-6], dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(smooth_step(points, gamma).sum(), points)
        assert grad.abs().max() < 1e-5
    zero = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(smooth_step(zero, gamma).sum(), zero)
    torch.testing.assert_close(slope, torch.tensor([3 / (2 * gamma)], dtype=torch.float64))


@pytest.mark.parametrize("experts, k", [(4, 1), (4, 2), (8, 3)])
def test_dselect_k_weights_sum_to_one_and_match_the_formula(experts, k):
    router = build_router({"method": "dselect_k"}, 6, experts, k)
    with torch.no_grad():
        for p in router.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(30, 6)
    out = router(x)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(30))
    bits = int(math.log2(experts))
    s = smooth_step(router.selectors(x).view(30, k, bits), 1.0)
    alpha = torch.softmax(router.selector_weights(x), -1)
    for e in range(experts):
        code = [(e >> (bits - 1 - j)) & 1 for j in range(bits)]
        r = torch.stack([s[..., j] if code[j] else 1 - s[..., j] for j in range(bits)], -1).prod(-1)  # [N, k]
        torch.testing.assert_close(out.weights[:, e], (alpha * r).sum(-1))
    assert torch.equal(out.mask, out.weights > 0) and not out.aux_losses


def test_dselect_k_saturated_selectors_each_pick_one_expert_by_its_binary_code():
    router = build_router({"method": "dselect_k"}, 6, 8, 2)
    with torch.no_grad():  # selector 0 codes 101 = expert 5, selector 1 codes 010 = expert 2
        router.selectors.weight.zero_()
        router.selectors.bias.copy_(torch.tensor([5.0, -5.0, 5.0, -5.0, 5.0, -5.0]))
    out = router(torch.randn(10, 6))
    r = router.selector_outputs(torch.randn(10, 6))
    torch.testing.assert_close(r[:, 0], torch.eye(8)[5].expand(10, -1))
    torch.testing.assert_close(r[:, 1], torch.eye(8)[2].expand(10, -1))
    assert (out.mask.sum(-1) == 2).all() and out.mask[:, [2, 5]].all()
    alpha = torch.softmax(router.selector_weights(torch.zeros(0, 6)), -1)  # shape check only
    assert alpha.shape == (0, 2)
    torch.testing.assert_close(out.weights[:, 2] + out.weights[:, 5], torch.ones(10))


def test_dselect_k_gradient_flows_to_both_gates():
    router = build_router({"method": "dselect_k", "entropy_coef": 0.1}, 6, 4, 2)
    out = router(torch.randn(30, 6))
    (out.weights * torch.randn(30, 4)).sum().add(out.aux_losses["entropy"]).backward()
    assert router.selectors.weight.grad.abs().sum() > 0 and router.selector_weights.weight.grad.abs().sum() > 0


def test_dselect_k_regularisers():
    router = build_router({"method": "dselect_k", "entropy_coef": 0.1}, 6, 5, 2)  # 5 experts: codes 5..7 reach none
    with torch.no_grad():
        for p in router.parameters():
            p.normal_(0, 0.1)
    x = torch.randn(30, 6)
    out = router(x)
    r = router.selector_outputs(x)  # [N, k, 5]
    reachable = r.sum(-1)
    assert (reachable > 0).all() and (reachable < 1).any() and (out.weights.sum(-1) <= 1 + 1e-6).all()
    torch.testing.assert_close(out.aux_losses["reachable"], (1 / reachable - 1).sum(-1).mean())
    torch.testing.assert_close(out.aux_losses["entropy"], 0.1 * -(r * torch.log(r + 1e-6)).sum((1, 2)).mean())
    torch.testing.assert_close(out.probs, out.weights / out.weights.sum(-1, keepdim=True))
    with torch.no_grad():  # both selectors saturate on code 111, which reaches no expert
        router.selectors.weight.zero_()
        router.selectors.bias.fill_(5.0)
    lost = router(x)
    assert (lost.weights == 0).all() and not lost.mask.any()
    assert torch.isfinite(lost.aux_losses["reachable"]) and torch.isfinite(lost.probs).all()


# ---- BASE layers (Lewis et al., 2021) ----

def optimal_total(scores, capacity):
    replicated = np.repeat(scores.numpy().astype(np.float64), capacity, axis=1)  # one column per expert slot
    rows, cols = linear_sum_assignment(replicated, maximize=True)
    return replicated[rows, cols].sum()


@pytest.mark.parametrize("tokens, experts, ties", [(12, 3, False), (13, 4, False), (40, 5, True), (64, 2, True),
                                                   (99, 8, False), (128, 4, True), (7, 7, False)])
def test_balanced_assignment_is_optimal(tokens, experts, ties):
    generator = torch.Generator().manual_seed(tokens)
    scores = (torch.randint(0, 3, (tokens, experts), generator=generator).float() if ties
              else torch.randn(tokens, experts, generator=generator))
    capacity = math.ceil(tokens / experts)
    for tolerance in (None, 1e-6):
        assigned = balanced_assignment(scores, capacity, tolerance)
        load = torch.bincount(assigned, minlength=experts)
        assert load.sum() == tokens and load.max() <= capacity
        if tokens % experts == 0:
            assert (load == capacity).all()
        total = scores[torch.arange(tokens), assigned].double().sum().item()
        bound = 1e-3 * (max(scores.max().item(), 0) - min(scores.min().item(), 0)) if tolerance is None else tolerance
        assert optimal_total(scores, capacity) - bound - 1e-9 <= total <= optimal_total(scores, capacity) + 1e-9


def test_base_router_balances_while_training_and_is_greedy_at_evaluation():
    router = build_router({"method": "base"}, 6, 4, 1)
    with torch.no_grad():
        router.centroids.normal_()
    x = torch.randn(40, 6) + torch.tensor([3.0, 0, 0, 0, 0, 0])  # skewed: greedy routing would be unbalanced
    affinity = x @ router.centroids.T
    trained = router.train()(x)
    assert (torch.bincount(trained.experts[:, 0], minlength=4) == 10).all()
    greedy = router.eval()(x)
    assert torch.equal(greedy.experts[:, 0], affinity.argmax(-1))
    assert torch.bincount(greedy.experts[:, 0], minlength=4).max() > 10
    for out in (trained, greedy):
        torch.testing.assert_close(out.weights, torch.sigmoid(affinity.gather(1, out.experts)))
        torch.testing.assert_close(out.probs, torch.softmax(affinity, -1))
    trained.weights.sum().backward()
    assert router.centroids.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="k must be 1"):
        build_router({"method": "base"}, 6, 4, 2)


# ---- expert choice (Zhou et al., 2022) ----

@pytest.mark.parametrize("capacity_factor, k, capacity", [(2.0, 1, 10), (1.0, 1, 5), (None, 3, 15), (9.0, 1, 20)])
def test_expert_choice_takes_each_experts_top_tokens(capacity_factor, k, capacity):
    router = build_router({"method": "expert_choice", "capacity_factor": capacity_factor, "init_std": 1.0}, 6, 4, k)
    x = torch.randn(20, 6)
    out = router(x)
    scores = torch.softmax(router.gate(x), -1)
    torch.testing.assert_close(out.probs, scores)
    assert torch.equal(out.experts, torch.arange(4).expand(20, -1))
    assert (out.mask.sum(0) == capacity).all()  # capacity = min(N, ceil(c * N / E))
    for e in range(4):
        assert set(out.mask[:, e].nonzero().squeeze(1).tolist()) == set(scores[:, e].topk(capacity).indices.tolist())
    torch.testing.assert_close(out.weights, scores * out.mask)


def test_expert_choice_tokens_no_expert_chose_pass_through():
    torch.manual_seed(6)
    experts = mlp_experts(4, 6)
    layer = MoE(experts, build_router({"method": "expert_choice", "capacity_factor": 0.5,
                                                     "init_std": 1.0}, 6, 4, 1))
    x = torch.randn(1, 40, 6)
    y, out = layer(x)
    unrouted = ~out.mask.any(-1)
    assert unrouted.any() and (y[0, unrouted] == 0).all()
    expected = sum(out.weights[:, e, None] * experts[e](x[0]) for e in range(4))
    torch.testing.assert_close(y[0], expected)


# ---- every survey router inside a GPT ----

GPT_SPECS = [({"method": "switch", "capacity_factor": 1.0}, 2), ({"method": "zloss"}, 1),
             ({"method": "hash"}, 2), ({"method": "hash", "mode": "balanced"}, 1),
             ({"method": "fixed_random"}, 1), ({"method": "dselect_k"}, 2), ({"method": "dselect_k"}, 1),
             ({"method": "base"}, 1), ({"method": "expert_choice"}, 1)]


def spec_id(value):
    return "-".join(map(str, value.values())) if isinstance(value, dict) else f"k{value}"


@pytest.mark.parametrize("spec, k", GPT_SPECS, ids=spec_id)
def test_survey_routers_train_inside_a_gpt(spec, k):
    vocab = 37

    def build(seed, fit=True):
        torch.manual_seed(seed)
        model = GPT(GPTConfig(vocab_size=vocab, block_size=16, n_layer=2, n_head=2, n_embd=16, moe_layers=(0, 1),
                              num_experts=4, k=k, router=spec))
        for router in model.routers():
            if fit:
                router.fit_token_counts(torch.arange(vocab).flip(0) * 3)
        return model

    idx = torch.randint(0, vocab, (4, 16), generator=torch.Generator().manual_seed(0))
    model = build(7)
    out = model(idx, targets=idx.roll(-1, 1))
    aux = sum((v for routing in out.routing for v in routing.aux_losses.values()), torch.zeros(()))
    (out.loss + aux).backward()
    assert torch.isfinite(out.loss) and torch.isfinite(aux)
    trainable = [p for router in model.routers() for p in router.parameters()]
    if not METHODS[spec["method"]].trainable:
        assert trainable == []
    else:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    assert model.transformer.h[0].mlp.experts.c_fc.grad is not None
    again = build(7)(idx, targets=idx.roll(-1, 1))
    assert torch.equal(out.logits, again.logits), "the same seed must build the same model"
    model.eval()
    reloaded = build(8, fit=False).eval()
    reloaded.load_state_dict(model.state_dict())  # what a saved checkpoint restores
    with torch.no_grad():
        logits = model(idx).logits
        assert torch.isfinite(logits).all() and torch.equal(reloaded(idx).logits, logits)
