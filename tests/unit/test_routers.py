"""The router interface: shapes, weights, gradient flow, and the REINFORCE estimator."""
import itertools
import math

import pytest
import torch

from moe_rpo.routers import METHODS, RouterOutput, build_router
from moe_rpo.routers.base import count_experts
from moe_rpo.routers.policy import (
    leave_one_out_baseline,
    reinforce_surrogate,
    selection_log_prob,
)
from moe_rpo.routers.task_gradient import task_gradient

DIM, EXPERTS, TOKENS = 6, 5, 32
SPECS = {
    "softmax_topk": {"method": "softmax_topk"},
    "jitter": {"method": "jitter", "epsilon": 0.2},
    "reinforce": {"method": "reinforce"},
    "rpo": {"method": "rpo", "weight_std": 0.3},
    "em": {"method": "em"},
    "noisy_topk": {"method": "noisy_topk"},
    "switch": {"method": "switch", "balance_coef": 0.05},
    "zloss": {"method": "zloss"},
    "hash": {"method": "hash"},
    "fixed_random": {"method": "fixed_random"},
    "dselect_k": {"method": "dselect_k"},
    "base": {"method": "base"},
    "expert_choice": {"method": "expert_choice"},
    "loss_free": {"method": "loss_free"},
    "deepseek_v3": {"method": "deepseek_v3"},
    "remoe": {"method": "remoe"},
    "top2": {"method": "top2"},
    "default_moe": {"method": "default_moe"},
    "moe_plus_plus": {"method": "moe_plus_plus"},
}
# Methods that differ from "k experts per token, the top k of probs" by design, by their class traits
# (tests/test_survey_routers.py checks their own rules):
ONE_SLOT_PER_EXPERT = {name for name, cls in METHODS.items() if cls.slot_per_expert}  # the mask picks the experts
TOP_1_ONLY = {name for name, cls in METHODS.items() if cls.max_k == 1}
RANDOM_SELECTION = {name for name, cls in METHODS.items() if cls.random_selection}  # drawn beyond the top k
BATCH_ASSIGNMENT = {name for name, cls in METHODS.items() if cls.batch_assignment}  # assigned over the batch
VOCAB = 50


def test_every_method_has_a_spec():
    assert set(SPECS) == set(METHODS)
    assert ONE_SLOT_PER_EXPERT == {"dselect_k", "expert_choice", "remoe"} and TOP_1_ONLY == BATCH_ASSIGNMENT == {"base"}
    assert RANDOM_SELECTION == {"top2"}
    assert {name for name, cls in METHODS.items() if not cls.trainable} == {"hash", "fixed_random"}
    assert {name for name, cls in METHODS.items() if cls.samples} == {"reinforce", "rpo"}


@pytest.mark.parametrize("method", SPECS)
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("training", [True, False])
def test_output_shapes_and_selection(method, k, training):
    max_k = METHODS[method].max_k
    if max_k is not None and k > max_k:
        with pytest.raises(ValueError, match=f"k must be {max_k}"):
            build_router(SPECS[method], DIM, EXPERTS, k)
        return
    router = build_router(SPECS[method], DIM, EXPERTS, k).train(training)
    out = router(torch.randn(TOKENS, DIM), torch.randint(0, VOCAB, (TOKENS,)))  # token ids: for hash routing
    assert isinstance(out, RouterOutput)
    slots = EXPERTS if method in ONE_SLOT_PER_EXPERT else k
    assert out.experts.shape == (TOKENS, slots) and out.experts.dtype == torch.long
    assert out.weights.shape == (TOKENS, slots)
    assert out.mask is None or (out.mask.shape == (TOKENS, slots) and (out.weights[~out.mask] == 0).all())
    assert router.num_experts == EXPERTS + len(router.null_kinds)  # MoE++ pools null experts after the FFN ones
    assert out.probs.shape == (TOKENS, router.num_experts)
    torch.testing.assert_close(out.probs.sum(-1), torch.ones(TOKENS))
    assert all(len(set(row.tolist())) == slots for row in out.experts), "selected experts must be distinct"
    samples = METHODS[method].samples and training
    assert (out.log_prob is not None) == samples
    if samples:
        assert out.log_prob.shape == (TOKENS,)
    elif method in ONE_SLOT_PER_EXPERT:
        assert torch.equal(out.experts, torch.arange(EXPERTS).expand(TOKENS, -1))
    elif method in RANDOM_SELECTION and training:
        assert (out.experts[:, 0] == out.probs.argmax(-1)).all()  # the first expert is the top one
    elif method in BATCH_ASSIGNMENT and training:
        assert torch.bincount(out.experts[:, 0], minlength=EXPERTS).max() <= math.ceil(TOKENS / EXPERTS)
    else:  # deterministic routers and evaluation mode select the top-k experts
        assert torch.equal(out.experts.sort(-1).values, out.probs.topk(k, -1).indices.sort(-1).values)


def test_unnormalized_weights_are_the_probabilities():
    router = build_router({"method": "softmax_topk"}, DIM, EXPERTS, 2)
    out = router(torch.randn(TOKENS, DIM))
    torch.testing.assert_close(out.weights, out.probs.gather(-1, out.experts))
    assert (out.weights.sum(-1) < 1).all()


def test_normalized_weights_sum_to_one_and_keep_ratios():
    router = build_router({"method": "softmax_topk", "normalize": True}, DIM, EXPERTS, 2)
    out = router(torch.randn(TOKENS, DIM))
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(TOKENS))
    raw = out.probs.gather(-1, out.experts)
    torch.testing.assert_close(out.weights[:, 0] / out.weights[:, 1], raw[:, 0] / raw[:, 1])


def test_rpo_weights_are_free():
    router = build_router({"method": "rpo", "weight_std": 0.5, "weight_init": 1.2}, DIM, EXPERTS, 2)
    out = router(torch.randn(2000, DIM))
    assert out.weights.max() > 1 and out.weights.min() < 0 < out.weights.mean()
    assert not torch.allclose(out.weights.sum(-1), torch.ones(2000))
    mode = router.eval()(torch.randn(4, DIM))
    torch.testing.assert_close(mode.weights, torch.full((4, 2), 1.2))


def test_jitter_changes_routing_only_while_training():
    router = build_router({"method": "jitter", "epsilon": 0.5}, DIM, EXPERTS, 1)
    x = torch.randn(TOKENS, DIM)
    assert not torch.equal(router.train()(x).probs, router.train()(x).probs)
    assert torch.equal(router.eval()(x).probs, router.eval()(x).probs)


def _grads(module):
    return {name: p.grad for name, p in module.named_parameters()}


@pytest.mark.parametrize("method", ["softmax_topk", "jitter", "em"])
def test_gradient_routers_learn_through_the_weights(method):
    router = build_router(SPECS[method], DIM, EXPERTS, 2)
    x = torch.randn(TOKENS, DIM, requires_grad=True)
    out = router(x)
    assert out.log_prob is None and not router.loss_terms(out, torch.zeros(TOKENS))
    out.weights.sum().backward()
    assert router.gate.weight.grad.abs().sum() > 0


def test_rpo_learns_only_through_the_policy_gradient():
    router = build_router(SPECS["rpo"], DIM, EXPERTS, 2)
    x = torch.randn(TOKENS, DIM, requires_grad=True)
    out = router(x)
    assert not out.weights.requires_grad, "sampled weights are actions: no gradient through them"
    task_loss = torch.rand(TOKENS)
    router.loss_terms(out, task_loss)["policy"].backward()
    assert router.gate.weight.grad.abs().sum() > 0
    assert router.weight_policy.bias.grad.abs().sum() > 0


def test_reinforce_router_gets_both_gradients():
    router = build_router(SPECS["reinforce"], DIM, EXPERTS, 2)
    out = router(torch.randn(TOKENS, DIM))
    assert out.weights.requires_grad
    out.weights.sum().backward(retain_graph=True)
    through_weights = router.gate.weight.grad.clone()
    router.zero_grad()
    router.loss_terms(out, torch.rand(TOKENS))["policy"].backward()
    assert through_weights.abs().sum() > 0 and router.gate.weight.grad.abs().sum() > 0


def test_policy_term_ignores_the_task_loss_gradient():
    log_prob = torch.zeros(4, requires_grad=True)
    loss = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    reinforce_surrogate(log_prob, loss).backward()
    assert loss.grad is None
    torch.testing.assert_close(log_prob.grad, (loss.detach() - leave_one_out_baseline(loss.detach())) / 4)


def test_selection_log_prob_is_a_distribution_over_ordered_samples():
    log_probs = torch.log_softmax(torch.randn(1, 4), -1)
    total = sum(selection_log_prob(log_probs, torch.tensor([pair])).exp()
                for pair in itertools.permutations(range(4), 2))
    torch.testing.assert_close(total, torch.ones(1))


@pytest.mark.parametrize("k", [1, 2])
def test_reinforce_estimator_is_unbiased(k):
    """Average REINFORCE gradient over many sampled selections == exact gradient of E_S[f(S)]."""
    torch.manual_seed(1)
    experts = 4
    logits = torch.tensor([0.3, -0.5, 1.0, 0.1], requires_grad=True)
    cost = torch.rand(experts, experts) * 3  # f(S) for an ordered sample; made symmetric below
    cost = cost + cost.T

    def f(sample):
        return cost[sample[:, 0], sample[:, -1]] if k == 2 else cost[sample[:, 0], sample[:, 0]]

    log_p = torch.log_softmax(logits, -1)
    exact = sum(selection_log_prob(log_p[None], torch.tensor([s])).exp() * f(torch.tensor([s]))
                for s in itertools.permutations(range(experts), k))
    (exact_grad,) = torch.autograd.grad(exact.sum(), logits)

    batches, batch = 40, 5000
    estimates = []
    for _ in range(batches):
        log_p = torch.log_softmax(logits, -1).expand(batch, experts)
        sample = torch.multinomial(log_p.exp().detach(), k, replacement=False)
        surrogate = reinforce_surrogate(selection_log_prob(log_p, sample), f(sample))
        (grad,) = torch.autograd.grad(surrogate, logits)
        estimates.append(grad)
    estimates = torch.stack(estimates)
    mean, stderr = estimates.mean(0), estimates.std(0) / math.sqrt(batches)
    assert ((mean - exact_grad).abs() < 4 * stderr + 1e-4).all(), (mean, exact_grad, stderr)
    assert (exact_grad.abs() > 10 * stderr).any(), "the test must be able to tell a biased estimator apart"


@pytest.mark.parametrize("spec, message", [
    ({"method": "nope"}, "unknown router method"),
    ({"method": "rpo", "epsilon": 0.1}, "has no option"),
    ({"method": "rpo", "weight_std": 0.0}, "weight_std"),
])
def test_bad_router_specs_are_rejected(spec, message):
    with pytest.raises(ValueError, match=message):
        build_router(spec, DIM, EXPERTS, 1)


def test_k_must_fit_the_experts():
    with pytest.raises(ValueError, match="k=6"):
        build_router({"method": "softmax_topk"}, DIM, EXPERTS, 6)


# ---- noisy top-k (Shazeer et al., 2017) and Switch (Fedus et al., 2021) against their formulas ----

def randomized(router):
    with torch.no_grad():
        for p in router.parameters():
            p.normal_(0, 0.5)
    return router


def test_noisy_topk_starts_at_zero_and_has_no_noise_at_evaluation():
    router = build_router({"method": "noisy_topk"}, DIM, EXPERTS, 2)
    assert all((p == 0).all() for p in router.parameters())
    randomized(router).eval()
    x = torch.randn(TOKENS, DIM)
    first, second = router(x), router(x)
    assert torch.equal(first.experts, second.experts) and not first.aux_losses
    torch.testing.assert_close(first.probs, torch.softmax(router.gate(x), -1))


def test_noisy_topk_weights_and_importance_loss():
    router = randomized(build_router({"method": "noisy_topk", "w_importance": 0.3, "w_load": 0.0}, DIM, EXPERTS, 2))
    out = router(torch.randn(TOKENS, DIM))
    selected = out.probs.gather(-1, out.experts)
    torch.testing.assert_close(out.weights, selected / selected.sum(-1, keepdim=True))  # softmax over the top k
    gates = torch.zeros(TOKENS, EXPERTS).scatter(1, out.experts, out.weights)
    importance = gates.sum(0)
    torch.testing.assert_close(out.aux_losses["importance"], 0.3 * importance.var() / importance.mean() ** 2)
    assert out.aux_losses["load"] == 0


@pytest.mark.parametrize("k", [1, 2])
def test_noisy_topk_load_is_the_probability_of_staying_in_the_top_k(k):
    """P(x, i) against Monte Carlo: redraw expert i's noise, keep the others' noisy logits fixed."""
    torch.manual_seed(3)
    router = randomized(build_router({"method": "noisy_topk"}, DIM, EXPERTS, k))
    x = torch.randn(4, DIM)
    with torch.no_grad():
        clean = router.gate(x)
        noise_std = torch.nn.functional.softplus(router.noise(x)) + 1e-2
        noisy = clean + torch.randn_like(clean) * noise_std
        p = router.prob_in_top_k(clean, noisy, noise_std, noisy.topk(k + 1, -1).values)
        draws = 20000
        for i in range(EXPERTS):
            redrawn = clean[:, i:i + 1] + torch.randn(4, draws) * noise_std[:, i:i + 1]
            others = torch.cat([noisy[:, :i], noisy[:, i + 1:]], 1)
            kth_other = others.topk(k, -1).values[:, -1:]
            frequency = (redrawn > kth_other).float().mean(1)
            se = (p[:, i] * (1 - p[:, i]) / draws).sqrt() + 1e-4
            assert ((frequency - p[:, i]).abs() < 5 * se).all(), (i, frequency, p[:, i])


def test_noisy_topk_load_loss_has_gradient_for_the_gate():
    router = randomized(build_router({"method": "noisy_topk", "w_importance": 0.0}, DIM, EXPERTS, 1))
    router(torch.randn(TOKENS, DIM)).aux_losses["load"].backward()
    assert router.gate.weight.grad.abs().sum() > 0 and router.noise.weight.grad.abs().sum() > 0


def test_switch_balance_loss_formula():
    router = build_router({"method": "switch", "balance_coef": 0.01}, DIM, EXPERTS, 1)
    out = router(torch.randn(TOKENS, DIM))
    f = torch.bincount(out.experts[:, 0], minlength=EXPERTS) / TOKENS
    torch.testing.assert_close(out.aux_losses["balance"], 0.01 * EXPERTS * (f * out.probs.mean(0)).sum())
    torch.testing.assert_close(out.weights, out.probs.gather(-1, out.experts))  # raw probabilities


def test_switch_balance_loss_is_alpha_when_uniform_and_larger_when_collapsed():
    router = build_router({"method": "switch", "balance_coef": 0.01, "init_std": 0.0}, DIM, EXPERTS, 1)
    with torch.no_grad():
        router.gate.weight.zero_()
    x = torch.randn(EXPERTS * 10, DIM)
    uniform = router(x).aux_losses["balance"]
    torch.testing.assert_close(uniform, torch.tensor(0.01 * EXPERTS * (1 / EXPERTS)))  # all to expert 0, P uniform
    with torch.no_grad():
        router.gate.weight[0] = 0
        router.gate.weight[0, 0] = 50.0
    collapsed = router(torch.ones(20, DIM)).aux_losses["balance"]
    assert collapsed > 4 * uniform


@pytest.mark.parametrize("spec, k, learns", [
    ({"method": "softmax_topk", "normalize": True}, 1, False),  # its one weight is always 1
    ({"method": "noisy_topk"}, 1, False),  # softmax over the kept logits: the same, only its balance terms move it
    ({"method": "softmax_topk", "normalize": True}, 2, True),
    ({"method": "softmax_topk", "normalize": False}, 1, True),
    ({"method": "switch"}, 1, True),
    ({"method": "reinforce"}, 1, True),  # through the REINFORCE surrogate, whose reward is the task loss
    ({"method": "rpo"}, 1, True),
    ({"method": "expert_choice"}, 2, True),
    ({"method": "hash"}, 1, None),  # nothing to train
    ({"method": "fixed_random"}, 1, None),
])
def test_task_gradient_probe_finds_routers_the_task_cannot_move(spec, k, learns):
    assert task_gradient(spec, k) is learns


@pytest.mark.parametrize("shape", [(100, 2), (50,), (0, 2)])
def test_expert_counts_are_bincounts(shape):
    """count_experts (no host sync on a GPU) counts what torch.bincount counts, over the active slots."""
    generator = torch.Generator().manual_seed(0)
    experts = torch.randint(0, 8, shape, generator=generator)
    active = torch.rand(shape, generator=generator) > 0.3
    assert torch.equal(count_experts(experts, 8), torch.bincount(experts.reshape(-1), minlength=8))
    assert torch.equal(count_experts(experts, 8, active), torch.bincount(experts[active], minlength=8))
