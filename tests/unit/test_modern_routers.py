"""The routers of 2024-2026 against their papers' formulas (loss-free balancing, the DeepSeek-V3 gate, ReMoE,
GShard's and the Gumbel second expert), and the regressions users of MoE libraries reported: a balancing bias
lost in a checkpoint or updated once per micro-batch, auxiliary losses in the reported loss, routing that
differs between two identical runs."""

import numpy as np
import pytest
import torch
from conftest import Killed, kill_at_batch

from moe_rpo import config as cfg
from moe_rpo import schema, sections, values
from moe_rpo.models import GPT, GPTConfig
from moe_rpo.routers import Router, RouterOutput, build_router
from moe_rpo.routers.loss_free import LossFreeBalance
from moe_rpo.routers.task_gradient import task_gradient
from moe_rpo.training.loop import train_lm
from moe_rpo.training.settings import TrainSettings

DIM, EXPERTS, VOCAB = 8, 4, 32


def routed(spec, k, tokens=64, seed=0, training=True):
    torch.manual_seed(seed)
    router = build_router(spec, DIM, EXPERTS, k).train(training)
    x = torch.randn(tokens, DIM)
    return router, x, router(x)


# --- loss-free balancing --------------------------------------------------------------------------------------

def test_loss_free_selects_by_biased_scores_and_weights_by_unbiased_ones():
    router, x, _ = routed({"method": "loss_free"}, k=1)
    router.expert_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 10.0]))  # expert 3 wins every selection
    out = router(x)
    scores = torch.softmax(router.gate(x), -1)
    assert (out.experts[:, 0] == 3).all()
    torch.testing.assert_close(out.weights[:, 0], scores[:, 3])  # the bias is not in the weights
    torch.testing.assert_close(out.probs, scores)
    out.weights.sum().backward()
    assert router.gate.weight.grad.abs().sum() > 0 and not router.expert_bias.requires_grad


def test_loss_free_bias_moves_by_u_towards_the_mean_load_once_per_step():
    router, x, _ = routed({"method": "loss_free", "update_rate": 0.01}, k=1)
    router.expert_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 10.0]))
    micro_batches = [router(x[:32]), router(x[32:])]  # two micro-batches of one optimizer step: all on expert 3
    router.update(micro_batches)
    torch.testing.assert_close(router.expert_bias, torch.tensor([0.01, 0.01, 0.01, 9.99]))  # one update of u


def test_loss_free_bias_balances_a_skewed_router():
    router, _, _ = routed({"method": "loss_free", "update_rate": 1e-3}, k=1)
    x = torch.randn(256, DIM) + 1
    with torch.no_grad():
        router.gate.weight.mul_(50)
        router.gate.weight[0] += 0.5  # expert 0 is preferred by most tokens
    start = router(x).load().max()
    late = []
    for step in range(600):
        out = router(x)
        late += [out.load().max()] if step >= 550 else []
        router.update([out])
    assert start > 0.5 and max(late) < 0.35


# --- the DeepSeek-V3 gate -------------------------------------------------------------------------------------

def test_deepseek_v3_weights_are_the_selected_sigmoid_scores_renormalised_and_scaled():
    router, x, out = routed({"method": "deepseek_v3", "route_scale": 2.5}, k=2)
    scores = torch.sigmoid(router.gate(x))
    chosen = scores.gather(1, scores.topk(2, -1).indices)
    assert torch.equal(out.experts, scores.topk(2, -1).indices)
    torch.testing.assert_close(out.weights, 2.5 * chosen / chosen.sum(-1, keepdim=True))


def test_deepseek_v3_group_limited_routing_keeps_the_best_groups():
    router = build_router({"method": "deepseek_v3", "groups": 2, "topk_groups": 1}, DIM, EXPERTS, 2)
    # group {0, 1} scores 0.9 + 0.1 = 1.0 < group {2, 3}: 0.6 + 0.5 = 1.1, though expert 0 is the best single one
    scores = torch.tensor([[0.9, 0.1, 0.6, 0.5]])
    assert router.select(scores).tolist() == [[2, 3]]
    assert build_router({"method": "deepseek_v3"}, DIM, EXPERTS, 2).select(scores).tolist() == [[0, 2]]


def test_deepseek_v3_rejects_groups_that_leave_too_few_experts():
    with pytest.raises(ValueError, match="groups=3 must divide"):
        build_router({"method": "deepseek_v3", "groups": 3}, DIM, EXPERTS, 1)
    with pytest.raises(ValueError, match="must leave at least k=3"):
        build_router({"method": "deepseek_v3", "groups": 2, "topk_groups": 1}, DIM, EXPERTS, 3)


@pytest.mark.parametrize("spec, k, learns", [
    ({"method": "deepseek_v3"}, 1, False),  # renormalised top-1: the weight is always route_scale
    ({"method": "deepseek_v3"}, 2, True),
    ({"method": "loss_free", "normalize": True}, 1, False),
    ({"method": "loss_free"}, 1, True),
    ({"method": "remoe"}, 1, True),
    ({"method": "top2"}, 2, True),
    ({"method": "top2", "second_policy": "sampling"}, 2, True),
])
def test_normalised_top_1_gives_the_router_no_task_gradient(spec, k, learns):
    """minimind #859: with k=1 and renormalised weights only the auxiliary terms move the router; the
    benchmark's task_gradient column marks such arms."""
    assert task_gradient(spec, k) is learns


# --- ReMoE ----------------------------------------------------------------------------------------------------

def test_remoe_routes_to_the_positive_relu_gates_with_the_load_weighted_l1_penalty():
    router, x, out = routed({"method": "remoe", "l1_coef_init": 0.5}, k=1)
    gates = torch.relu(router.gate(x))
    assert torch.equal(out.mask, gates > 0)
    torch.testing.assert_close(out.weights, gates)
    f = (gates > 0).sum(0) * EXPERTS / (1 * len(x))
    torch.testing.assert_close(out.aux_losses["l1"], 0.5 * (f * gates.mean(0)).sum())


def test_remoe_coefficient_grows_while_too_dense_and_shrinks_once_sparse_enough():
    router, x, out = routed({"method": "remoe", "l1_coef_init": 1.0}, k=1)
    assert out.mask.float().mean() > 0.25  # about half the gates are open at the start: below the 0.75 target sparsity
    router.update([out])
    assert router.l1_coef.item() == pytest.approx(1.2)
    with torch.no_grad():
        router.gate.weight.fill_(-1.0)
    closed = router(x.abs())  # every gate shut: sparsity 1 >= the target
    router.update([closed])
    assert router.l1_coef.item() == pytest.approx(1.0)


def test_remoe_penalty_drives_the_router_towards_k_experts_per_token():
    """Features with a mean, as hidden states have: a gate without bias can then close for most tokens."""
    torch.manual_seed(0)
    router = build_router({"method": "remoe", "l1_coef_init": 1e-3}, DIM, EXPERTS, 1).train()
    x, target = torch.randn(256, DIM) + 1, torch.randn(256).abs()
    optimizer = torch.optim.Adam(router.parameters(), lr=1e-2)
    experts_per_token = []
    for _ in range(600):
        out = router(x)
        loss = (out.weights.sum(-1) - target).pow(2).mean() + out.aux_losses["l1"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        router.update([out])
        experts_per_token.append(out.mask.float().sum(-1).mean().item())
    assert experts_per_token[0] > 2 and np.mean(experts_per_token[-200:]) == pytest.approx(1.0, abs=0.25)


# --- second-expert variants -----------------------------------------------------------------------------------

def test_gshard_keeps_the_second_expert_with_probability_twice_its_weight():
    router, x, _ = routed({"method": "top2", "second_policy": "random"}, k=2, tokens=20000)
    with torch.no_grad():
        router.gate.weight.zero_()
        router.gate.weight[:, 0] = torch.tensor([2.0, 1.0, 0.0, -1.0])
    x = torch.randn(20000, DIM)
    out = router(x)
    g2 = out.weights[:, 1].where(out.mask[:, 1], torch.zeros(()))  # zero where dropped
    probs = out.probs.gather(1, out.experts)
    expected_keep = (2 * probs[:, 1] / probs.sum(-1)).clamp(max=1)
    assert out.mask[:, 0].all()
    assert out.mask[:, 1].float().mean().item() == pytest.approx(expected_keep.mean().item(), abs=0.015)
    torch.testing.assert_close(g2[out.mask[:, 1]], (probs[:, 1] / probs.sum(-1))[out.mask[:, 1]])
    assert router.eval()(x).mask is None  # evaluation keeps both


def test_gumbel_second_expert_is_drawn_from_the_softmax_without_the_first():
    router = build_router({"method": "top2", "second_policy": "sampling"}, DIM, EXPERTS, 2).train()
    with torch.no_grad():
        router.gate.weight.zero_()
        router.gate.weight[:, 0] = torch.tensor([3.0, 1.0, 0.5, 0.0])
    x = torch.zeros(40000, DIM)
    x[:, 0] = 1.0
    out = router(x)
    assert (out.experts[:, 0] == 0).all()
    share = torch.bincount(out.experts[:, 1], minlength=EXPERTS).float() / len(x)
    others = torch.softmax(torch.tensor([1.0, 0.5, 0.0]), 0)
    torch.testing.assert_close(share[1:], others, atol=0.01, rtol=0)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(len(x)))


def test_gshard_balance_loss_counts_first_choices():
    router, x, out = routed({"method": "top2", "balance_coef": 0.1}, k=2)
    first = torch.bincount(out.experts[:, 0], minlength=EXPERTS) / len(x)
    torch.testing.assert_close(out.aux_losses["balance"], 0.1 * EXPERTS * (first * out.probs.mean(0)).sum())


# --- training regressions -------------------------------------------------------------------------------------

def train_settings(**overrides):
    train = {"steps": 9, "batch_size": 4, "block_size": 16, "eval_every": 3, "eval_batches": 2,
             "checkpoint_every": 3, "device": "cpu", **overrides}
    return TrainSettings.of(schema.validate_definition(train, "lm_train"))


@pytest.fixture(scope="module")
def tokens():
    ids = np.random.default_rng(0).integers(0, VOCAB, 3000).astype(np.uint16)
    return ids[:2500], ids[2500:]


def moe_gpt(router, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=VOCAB, block_size=16, n_layer=1, n_head=2, n_embd=16, moe_layers=(0,),
                         num_experts=EXPERTS, k=1, router=router))


LOSS_FREE = {"method": "loss_free", "update_rate": 0.05}


def bias_of(model):
    return model.routers()[0].expert_bias


@pytest.fixture
def update_calls(monkeypatch):
    """The number of outputs each LossFreeBalance.update call gets, in call order."""
    calls, original = [], LossFreeBalance.update

    def counted(self, outputs):
        calls.append(len(outputs))
        original(self, outputs)

    monkeypatch.setattr(LossFreeBalance, "update", counted)
    return calls


def test_loss_free_bias_is_updated_once_per_optimizer_step_in_training(tokens, update_calls):
    """torchtitan #1304: the bias moved on every micro-batch. Here train_lm calls update once per step."""
    model = moe_gpt(LOSS_FREE)
    train_lm(model, *tokens, train_settings(), seed=0)
    assert update_calls == [1] * 9
    moves = bias_of(model) / 0.05  # nine steps of -1, 0 or +1 times u each
    assert torch.allclose(moves, moves.round(), atol=1e-4) and moves.abs().sum() > 0 and moves.abs().max() <= 9


@pytest.mark.parametrize("router", [LOSS_FREE, {"method": "remoe", "l1_coef_init": 1e-2}], ids=["loss-free", "remoe"])
def test_router_state_survives_a_kill_and_resume_bit_equal(tokens, tmp_path, monkeypatch, router):
    """marin #8972 / torchtitan #1222: the checkpoint carries the router's buffers, so a resumed run ends with the
    same buffers and history as one uninterrupted run."""
    whole = moe_gpt(router)
    uninterrupted = train_lm(whole, *tokens, train_settings(), seed=3)
    checkpoint = tmp_path / "run.pt"
    kill_at_batch(monkeypatch, 8)  # after the checkpoint of step 6
    with pytest.raises(Killed):
        train_lm(moe_gpt(router), *tokens, train_settings(), seed=3, checkpoint=checkpoint, fingerprint="a")
    saved = torch.load(checkpoint, weights_only=True)["buffers"]
    assert any(value.abs().sum() > 0 for value in saved.values())  # a moved bias or coefficient, not zeros
    monkeypatch.undo()
    resumed_model = moe_gpt(router)
    resumed = train_lm(resumed_model, *tokens, train_settings(), seed=3, checkpoint=checkpoint, fingerprint="a")
    assert resumed == uninterrupted
    for (name, a), (_, b) in zip(whole.named_buffers(), resumed_model.named_buffers()):
        assert torch.equal(a, b), name


def test_auxiliary_losses_stay_out_of_the_reported_loss(tokens):
    """open_lm #255: the reported training loss is the LM loss alone, whatever the balance coefficient."""
    losses = []
    for coef in (0.0, 100.0):
        model = moe_gpt({"method": "switch", "balance_coef": coef})
        history = train_lm(model, *tokens, train_settings(steps=1, eval_every=1, lr=1e-9, warmup_steps=0), seed=0)
        losses.append(history[-1]["train_loss"])
    assert losses[0] == losses[1]


@pytest.mark.parametrize("router", [LOSS_FREE, {"method": "top2", "second_policy": "sampling"}])
def test_two_identical_runs_route_identically(tokens, router):
    runs = []
    for _ in range(2):
        model = moe_gpt(router)
        history = train_lm(model, *tokens, train_settings(), seed=5)
        model.eval()
        with torch.no_grad():
            out = model(torch.as_tensor(tokens[1][:64].astype(np.int64)).view(4, 16))
        runs.append((history, out.routing[0].experts, [b.clone() for b in model.buffers()]))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][2], runs[1][2]))


# --- Default MoE ----------------------------------------------------------------------------------------------

def moe_layer(router_spec, seed=0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=8, n_layer=1, n_head=2, n_embd=16, moe_layers=(0,),
                          num_experts=EXPERTS, k=1, router=router_spec))
    return model.transformer.h[0].mlp


def test_default_moe_keeps_a_moving_average_of_each_experts_mean_output():
    layer = moe_layer({"method": "default_moe", "decay": 0.9}).train()
    x = torch.randn(2, 8, 16)
    _, routing = layer(x)
    tokens = x.reshape(16, 16)
    for e in range(EXPERTS):
        chosen = routing.experts[:, 0] == e
        n = int(chosen.sum())
        rows_of_e = torch.tensor([0 if j < e else n for j in range(EXPERTS)])  # all n rows belong to expert e
        outputs = layer.experts(tokens[chosen], torch.full((n,), e), rows_of_e)
        expected = 0.1 * outputs.mean(0) if n else torch.zeros(16)  # one step from zero, decay 0.9
        torch.testing.assert_close(layer.router.default_vectors[e], expected.detach(), atol=1e-6, rtol=1e-5)
    frozen = layer.router.default_vectors.clone()
    layer.eval()(x)
    assert torch.equal(layer.router.default_vectors, frozen)  # evaluation leaves them alone


def test_default_moe_changes_the_routers_gradient_only():
    standard, default = moe_layer({"method": "softmax_topk"}), moe_layer({"method": "default_moe"})
    with torch.no_grad():
        default.router.default_vectors.normal_()
    default.router.train(False)  # no moving-average update in this pass: compare like with like
    x = torch.randn(2, 8, 16)
    y_standard, _ = standard(x)
    y_default, _ = default(x)
    torch.testing.assert_close(y_default, y_standard)  # the same forward pass
    target = torch.randn_like(y_standard)
    grads = []
    for layer, y in ((standard, y_standard), (default, y_default)):
        (y - target).pow(2).sum().backward()
        grads.append(layer.router.gate.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])  # the unselected experts' defaults reach the gate
    assert torch.allclose(standard.experts.c_fc.grad, default.experts.c_fc.grad)  # the experts' gradients do not move


def test_default_moe_in_forward_adds_the_default_term():
    layer = moe_layer({"method": "default_moe", "in_forward": True}).eval()
    with torch.no_grad():
        layer.router.default_vectors.normal_()
    x = torch.randn(2, 8, 16)
    y, routing = layer(x)
    sparse = moe_layer({"method": "softmax_topk"}).eval()(x)[0]
    unused = routing.probs * ~routing.selected()
    torch.testing.assert_close(y - sparse, (unused @ layer.router.default_vectors).view(2, 8, 16))


# --- MoE++ null experts ---------------------------------------------------------------------------------------

def test_moe_plus_plus_pools_null_experts_after_the_ffn_experts():
    router = build_router({"method": "moe_plus_plus", "zero": 1, "copy": 1, "constant": 2}, DIM, EXPERTS, 2)
    assert router.num_experts == EXPERTS + 4 and router.null_kinds == ("zero", "copy", "constant", "constant")
    assert router.gate.weight.shape == (EXPERTS + 4, DIM)
    with pytest.raises(ValueError, match="at least one"):
        build_router({"method": "moe_plus_plus", "zero": 0, "copy": 0, "constant": 0}, DIM, EXPERTS, 2)


class Fixed(Router):
    """Sends every token to the given pool indices with the given weights."""

    def __init__(self, pool, experts, weights):
        super().__init__(16, pool, len(experts))
        self.chosen, self.chosen_weights = torch.tensor(experts), torch.tensor(weights)

    def forward(self, x, token_ids=None):
        n = len(x)
        return RouterOutput(experts=self.chosen.expand(n, -1), weights=self.chosen_weights.expand(n, -1),
                            probs=torch.full((n, self.num_experts), 1 / self.num_experts))


@pytest.mark.parametrize("slots, weights, expected", [
    ([EXPERTS, EXPERTS + 1], [0.7, 0.4], lambda x, layer: 0.4 * x),  # zero expert: nothing; copy expert: the token
    ([0, EXPERTS], [0.5, 0.5], lambda x, layer: 0.5 * layer.experts(x, torch.zeros(len(x), dtype=torch.long),
                                                                     torch.full((EXPERTS,), len(x)))),
])
def test_null_experts_compute_zero_and_copy(slots, weights, expected):
    layer = moe_layer({"method": "moe_plus_plus", "zero": 1, "copy": 1, "constant": 1}).eval()
    layer.router = Fixed(layer.router.num_experts, slots, weights)
    x = torch.randn(1, 8, 16)
    y, _ = layer(x)
    torch.testing.assert_close(y.view(8, 16), expected(x.view(8, 16), layer))


def test_constant_expert_mixes_the_token_with_its_trained_vector():
    layer = moe_layer({"method": "moe_plus_plus", "zero": 0, "copy": 0, "constant": 1}).eval()
    layer.router = Fixed(layer.router.num_experts, [EXPERTS], [2.0])
    x = torch.randn(1, 8, 16)
    y, _ = layer(x)
    nulls = layer.null_experts
    a = torch.softmax(nulls.mixers(x.view(8, 16)), -1)
    torch.testing.assert_close(y.view(8, 16), 2.0 * (a[:, :1] * x.view(8, 16) + a[:, 1:] * nulls.vectors[0]))
    y.sum().backward()
    assert nulls.vectors.grad.abs().sum() > 0 and nulls.mixers.weight.grad.abs().sum() > 0


def test_the_toys_refuse_null_experts_and_the_benchmark_toy_column_skips_them():
    with pytest.raises(values.ConfigError, match="toy.routing.methods.0: router 'moe_plus_plus' adds null experts"):
        cfg.validate({"toy": {"routing": {"methods": [{"router": "moe_plus_plus", "k": 1}]}}})
    config = cfg.validate({"benchmark": {"methods": [{"router": "standard", "k": 1}, {"router": "moe_plus_plus", "k": 2}]}})
    assert sections.benchmark_toy_settings(config)["methods"] == [{"router": "standard", "k": 1}]


# --- DeepSeekMoE's fine-grained and shared experts ------------------------------------------------------------

def fine_grained(granularity, shared=0, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=VOCAB, block_size=8, n_layer=1, n_head=2, n_embd=16, moe_layers=(0,),
                         num_experts=EXPERTS, k=1, granularity=granularity, shared_experts=shared))


def expert_weights(model):
    experts = model.transformer.h[0].mlp.experts
    return experts.c_fc.numel() + experts.c_proj.numel()


def test_fine_grained_experts_keep_the_parameters_and_the_active_flops():
    coarse, fine = fine_grained(1), fine_grained(4)
    layer = fine.transformer.h[0].mlp
    assert len(layer.experts) == 4 * EXPERTS and layer.router.k == 4 and layer.experts.c_fc.shape[1] == 16
    assert expert_weights(fine) == expert_weights(coarse)  # the same expert weights in all
    x = torch.randint(0, VOCAB, (2, 8))
    out = fine(x, x)
    assert out.routing[0].experts.shape == (16, 4)  # 4 experts of a quarter width: one coarse expert's FLOPs


def test_shared_experts_process_every_token():
    model = fine_grained(2, shared=1).eval()
    layer = model.transformer.h[0].mlp
    assert layer.shared.c_fc.out_features == 32  # one expert of the split size (4 * 16 / 2)
    x = torch.randn(1, 8, 16)
    with_shared, _ = layer(x)
    shared_out = layer.shared(x.view(8, 16))
    layer.shared = None
    without, _ = layer(x)
    torch.testing.assert_close(with_shared.view(8, 16), without.view(8, 16) + shared_out)


def test_granularity_must_divide_the_hidden_width():
    with pytest.raises(values.ConfigError, match="shakespeare_moe.granularity: 3 does not divide"):
        cfg.validate({"shakespeare_moe": {"granularity": 3}})


# --- gradient accumulation ------------------------------------------------------------------------------------

def test_two_micro_batches_train_like_one_batch(tokens):
    runs = []
    for grad_accum in (1, 2):
        model = moe_gpt({"method": "softmax_topk"}).double()
        history = train_lm(model, *tokens, train_settings(grad_accum=grad_accum), seed=0)
        runs.append((history, {name: p.detach().clone() for name, p in model.named_parameters()}))
    (one, one_params), (two, two_params) = runs
    assert all(torch.allclose(one_params[name], two_params[name], atol=1e-10) for name in one_params)
    assert [row["train_loss"] for row in two[1:]] == pytest.approx([row["train_loss"] for row in one[1:]], rel=1e-9)


def test_the_bias_is_updated_once_per_optimizer_step_from_every_micro_batch(tokens, update_calls):
    """torchtitan #1304: the bias moved on every micro-batch of a gradient-accumulation step."""
    train_lm(moe_gpt(LOSS_FREE), *tokens, train_settings(grad_accum=2), seed=0)
    assert update_calls == [2] * 9  # nine steps, each with both micro-batches' loads


def test_a_batch_that_does_not_split_into_micro_batches_is_refused(tokens):
    with pytest.raises(ValueError, match="do not split into grad_accum=3"):
        train_lm(moe_gpt(LOSS_FREE), *tokens, train_settings(grad_accum=3), seed=0)
    with pytest.raises(values.ConfigError, match="recovery.train: the 16 rows of a process's batch do not split"):
        cfg.validate({"recovery": {"train": {"grad_accum": 3}}})
