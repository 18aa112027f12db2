"""GPT-2 and its MoE layers: parity with Hugging Face, sparse dispatch, recovery models, checkpoints."""
import math

import pytest
import torch

from moe_rpo.lm.recovery import recovery_metrics
from moe_rpo.models import GPT, GPTConfig, MoE, from_hf, load_gpt, recovery_model, save_gpt
from moe_rpo.models import experts as experts_module
from moe_rpo.models.experts import auto_kernel, grouped_mm_supported
from moe_rpo.models.gpt import MLP, init_gpt2_
from moe_rpo.routers import METHODS, Router, RouterOutput, build_router
from moe_rpo.routing_metrics import routing_metrics

VOCAB, N_LAYER, N_EMBD = 101, 2, 32
SOFTMAX = {"method": "softmax_topk"}


class Pick(Router):
    """Test router: every token goes to expert `chosen` with weight 1 and, for k > 1, to the next
    experts with weight 0."""

    chosen = 0

    def forward(self, x, token_ids=None):
        n = x.shape[0]
        experts = ((self.chosen + torch.arange(self.k)) % self.num_experts).expand(n, self.k)
        weights = torch.zeros(n, self.k)
        weights[:, 0] = 1.0
        probs = torch.nn.functional.one_hot(experts[:, 0], self.num_experts).float()
        return RouterOutput(experts=experts, weights=weights, probs=probs)


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    """A tiny randomly initialised Hugging Face GPT-2 with every parameter perturbed (so that biases and
    LayerNorms are not at their trivial init), saved to disk; returns (path, model)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=N_LAYER, n_head=2, n_embd=N_EMBD, vocab_size=VOCAB, n_positions=64,
                        bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("hf_gpt2")
    model.save_pretrained(path)
    return path, model.eval()


@pytest.fixture(scope="module")
def base(hf_checkpoint):
    return from_hf(hf_checkpoint[0]).eval()


def tokens(batch=3, length=20, seed=1):
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_logits_match_hugging_face(hf_checkpoint, base):
    idx = tokens()
    with torch.no_grad():
        expected = hf_checkpoint[1](idx).logits
        out = base(idx, targets=idx)
    assert torch.allclose(out.logits, expected, atol=1e-5), (out.logits - expected).abs().max()
    assert out.routing == [] and out.token_loss.shape == (idx.numel(),)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(expected.view(-1, VOCAB), idx.view(-1)))


@pytest.mark.parametrize("k", [1, 2])
def test_moe_routed_to_the_pretrained_expert_gives_the_pretrained_logits(hf_checkpoint, base, monkeypatch, k):
    monkeypatch.setitem(METHODS, "pick", Pick)
    model = recovery_model(base, [0, 1], "diff", 0.0, {"method": "pick"}, k=k).eval()
    idx = tokens()
    with torch.no_grad():
        expected = hf_checkpoint[1](idx).logits
        out = model(idx)
    assert torch.allclose(out.logits, expected, atol=1e-5), (out.logits - expected).abs().max()
    assert len(out.routing) == 2 and all(r.experts.shape == (idx.numel(), k) for r in out.routing)
    assert recovery_metrics(out.routing[0])["accuracy"] == 1.0
    for router in model.routers():  # a distractor's output differs
        router.chosen = 1
    with torch.no_grad():
        assert not torch.allclose(model(idx).logits, expected, atol=1e-3)


KERNELS = ["loop"] + (["grouped_mm"] if grouped_mm_supported("cpu", torch.float32) else [])


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("router, k", [("softmax_topk", 1), ("softmax_topk", 2), ("softmax_topk", 3),
                                       ("switch", 1), ("expert_choice", 2)])
def test_sparse_dispatch_matches_a_dense_computation(kernel, router, k):
    """Every token's output is the weighted sum of its selected experts' outputs over its dispatched slots,
    with either kernel; gradients reach every parameter; switched-off slots (capacity, expert choice) add 0."""
    torch.manual_seed(0)
    config = GPTConfig(n_embd=16)
    experts = [MLP(config) for _ in range(4)]
    spec = {"method": router, **({"init_std": 1.0} if router == "softmax_topk" else {}),
            **({"capacity_factor": 1.0} if router == "switch" else {})}
    layer = MoE(experts, build_router(spec, 16, 4, k)).train()
    layer.experts.kernel = kernel
    x = torch.randn(2, 50, 16)
    y, routing = layer(x)
    every_expert = torch.stack([expert(x.view(-1, 16)) for expert in experts], 1)  # [N, E, C]
    chosen = every_expert.gather(1, routing.experts[..., None].expand(-1, -1, 16))  # [N, k, C]
    expected = ((routing.weights * routing.active())[..., None] * chosen).sum(1).view(2, 50, 16)
    torch.testing.assert_close(y, expected)
    assert len(set(routing.experts[routing.active()].tolist())) == 4, "the test should exercise every expert"
    if router != "softmax_topk":
        assert not routing.active().all(), "the test should switch some slots off"
    y.square().sum().backward()
    assert all(p.grad is not None for p in layer.experts.parameters())


def test_kernels_agree_and_repeat_bit_for_bit():
    """grouped_mm and the per-expert loop give the same outputs and gradients; each kernel repeats exactly."""
    if len(KERNELS) < 2:
        pytest.skip("grouped_mm is not supported here")
    torch.manual_seed(0)
    layer = MoE([MLP(GPTConfig(n_embd=16)) for _ in range(4)], build_router({"method": "softmax_topk"}, 16, 4, 2))
    x = torch.randn(2, 30, 16)
    results = {}
    for kernel in KERNELS * 2:
        layer.zero_grad()
        layer.experts.kernel = kernel
        y, _ = layer(x)
        y.square().sum().backward()
        result = [y.detach()] + [p.grad.clone() for p in layer.parameters()]
        if kernel in results:
            assert all(torch.equal(a, b) for a, b in zip(results[kernel], result))
        results[kernel] = result
    for a, b in zip(*results.values()):
        torch.testing.assert_close(a, b)


@pytest.mark.skipif(not grouped_mm_supported("cpu", torch.bfloat16), reason="grouped_mm is not supported here")
def test_torch_compile_traces_an_moe_gpt_in_one_graph(monkeypatch):
    """Where the layer picks grouped_mm (a GPU; here the CPU, let in), dynamo traces an MoE GPT's bf16 loss as
    one graph: the kernel choice is a constant to it, not a check it would trace (9 graph breaks); the compiled
    model's loss and gradients are eager's (to bf16 rounding)."""
    monkeypatch.setattr(experts_module, "GROUPED_MM_DEVICES", ("cpu",))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=16, n_layer=2, n_head=2, n_embd=32, moe_layers=(0, 1), k=2))
    idx = tokens(2, 16)

    def loss_and_grads(forward):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = forward(idx, targets=idx).loss
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in model.parameters()]

    with torch.autocast("cpu", dtype=torch.bfloat16):
        explained = torch._dynamo.explain(model)(idx, targets=idx)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    torch._dynamo.reset()
    eager, compiled = loss_and_grads(model), loss_and_grads(torch.compile(model, backend="aot_eager"))
    assert auto_kernel("cpu", torch.bfloat16, False) == "grouped_mm"
    for a, b in zip(eager, compiled):  # bfloat16 matmuls, rounded where the traced graph rounds
        torch.testing.assert_close(a, b, rtol=2e-2, atol=1e-4)


def test_compiled_layers_take_the_loop_where_grouped_mm_cannot_be_traced():
    """grouped_mm's meta kernel (what torch.compile traces) takes bfloat16 only: compiled float32 takes the loop;
    the CPU takes the loop."""
    assert auto_kernel("cpu", torch.bfloat16, False) == "loop"
    assert auto_kernel("cuda", torch.float32, True) == "loop"


def test_the_stacked_experts_keep_the_mlps_weights_and_gpt2_init():
    """MoE copies its MLPs' weights into the stacked layout (mlp_state gives them back), and a GPT's experts
    get GPT-2's init drawn as separate MLPs would draw it (the same numbers as before stacking)."""
    mlps = [MLP(GPTConfig(n_embd=16)) for _ in range(3)]
    experts = MoE(mlps, build_router(SOFTMAX, 16, 3, 1)).experts
    for e, mlp in enumerate(mlps):
        assert all(torch.equal(experts.mlp_state(e)[name], p) for name, p in mlp.state_dict().items())
    torch.manual_seed(5)
    init_gpt2_(experts, n_layer=2)
    torch.manual_seed(5)
    for mlp in mlps:
        init_gpt2_(mlp, n_layer=2)
    for e, mlp in enumerate(mlps):
        assert all(torch.equal(experts.mlp_state(e)[name], p) for name, p in mlp.state_dict().items())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_routers_compute_in_float32_under_bf16_autocast(method):
    """Selective precision: under autocast (bf16 training on a GPU) the router still computes in float32, so
    every router's arithmetic is the same as without autocast, whatever autocast's per-op dtype policy."""
    torch.manual_seed(0)
    config = GPTConfig(n_embd=16)
    layer = MoE([MLP(config) for _ in range(4)], build_router({"method": method}, 16, 4, 1))
    layer.router.fit_token_counts(torch.ones(10))
    x, ids = torch.randn(2, 8, 16), torch.randint(0, 10, (2, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, routing = layer(x, ids)
    assert routing.probs.dtype == routing.weights.dtype == torch.float32
    assert all(loss.dtype == torch.float32 for loss in routing.aux_losses.values())
    y.float().sum().backward()


def test_gpt2_init_and_router_init():
    config = GPTConfig(vocab_size=VOCAB, block_size=64, n_layer=6, n_head=4, n_embd=64, moe_layers=(1,), k=2,
                       router={"method": "rpo", "weight_std": 0.1})
    model = GPT(config)
    assert model.lm_head.weight is model.transformer.wte.weight
    block = model.transformer.h[0]
    assert block.mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(12), rel=0.05)
    assert block.attn.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(12), rel=0.05)
    assert (block.mlp.c_fc.bias == 0).all()
    expert = model.transformer.h[1].mlp.experts.mlp_state(3)
    assert expert["c_proj.weight"].std().item() == pytest.approx(0.02 / math.sqrt(12), rel=0.05)
    (router,) = model.routers()
    torch.testing.assert_close(router.weight_policy.bias, torch.full((4,), 0.5))  # the router's own init


def test_recovery_experts(base):
    diff = recovery_model(base, [1], "diff", 0.0, SOFTMAX, seed=0)
    sim = recovery_model(base, [1], "sim", 0.05, SOFTMAX, seed=0)
    pretrained = base.transformer.h[1].mlp
    assert base.transformer.h[0].mlp is not diff.transformer.h[0].mlp, "base must not be modified"
    assert isinstance(base.transformer.h[1].mlp, MLP)
    for model in (diff, sim):
        assert isinstance(model.transformer.h[0].mlp, MLP) and model.config.moe_layers == (1,)
        experts = model.transformer.h[1].mlp.experts
        assert len(experts) == 4
        for name, p in pretrained.named_parameters():
            assert torch.equal(experts.mlp_state(0)[name], p)
    diff_experts = [diff.transformer.h[1].mlp.experts.mlp_state(e) for e in range(4)]
    for name in ("c_fc.weight", "c_proj.weight"):
        fresh = [expert[name] for expert in diff_experts[1:]]
        assert not torch.allclose(fresh[0], pretrained.get_parameter(name), atol=1e-2)
        assert not torch.equal(fresh[0], fresh[1])
    assert diff_experts[1]["c_fc.weight"].std().item() == pytest.approx(0.02, rel=0.05)
    assert diff_experts[1]["c_proj.weight"].std().item() == pytest.approx(0.02 / math.sqrt(2 * N_LAYER), rel=0.05)
    assert (diff_experts[1]["c_fc.bias"] == 0).all() and (diff_experts[1]["c_proj.bias"] == 0).all()
    for expert in (sim.transformer.h[1].mlp.experts.mlp_state(e) for e in range(1, 4)):
        for name, p in pretrained.named_parameters():
            noise = expert[name] - p
            assert noise.abs().min() > 0, name
            if name.endswith("weight"):  # 4096 entries: the std is measured to about 1%
                assert (noise.std() / p.std()).item() == pytest.approx(0.05, rel=0.05), name


def test_sim_scale_zero_copies_the_pretrained_mlp(base):
    model = recovery_model(base, [0], "sim", 0.0, SOFTMAX)
    c_fc = model.transformer.h[0].mlp.experts.c_fc
    assert all(torch.equal(w, c_fc[0]) for w in c_fc)


@pytest.mark.parametrize("spec", [SOFTMAX, {"method": "rpo", "weight_std": 0.1}])
def test_only_routers_train(base, spec):
    model = recovery_model(base, [0, 1], "diff", 0.0, spec, k=2).train()
    router_params = {id(p) for router in model.routers() for p in router.parameters()}
    assert {id(p) for p in model.parameters() if p.requires_grad} == router_params
    idx = tokens()
    out = model(idx, targets=idx)
    total = out.loss + sum(sum(router.loss_terms(routing, out.token_loss).values(), torch.zeros(()))
                           for router, routing in zip(model.routers(), out.routing))
    total.backward()
    for p in model.parameters():
        if id(p) in router_params:
            assert p.grad is not None and p.grad.abs().sum() > 0
        else:
            assert p.grad is None


def test_recovery_is_deterministic(base):
    rng_state = torch.get_rng_state()
    a, b = (recovery_model(base, [1], "sim", 0.1, SOFTMAX, seed=3) for _ in range(2))
    c = recovery_model(base, [1], "sim", 0.1, SOFTMAX, seed=4)
    assert torch.equal(torch.get_rng_state(), rng_state), "the global random state must be left alone"
    assert all(torch.equal(a.state_dict()[name], t) for name, t in b.state_dict().items())
    assert not torch.equal(a.transformer.h[1].mlp.experts.c_fc[1], c.transformer.h[1].mlp.experts.c_fc[1])
    assert not torch.equal(a.routers()[0].gate.weight, c.routers()[0].gate.weight)
    idx = tokens()
    assert torch.equal(a.eval()(idx, targets=idx).loss, b.eval()(idx, targets=idx).loss)


def test_routing_metrics_and_the_recovery_accuracy_beside_them():
    probs = torch.tensor([[0.4, 0.6, 0.0], [0.1, 0.7, 0.2], [1.0, 0.0, 0.0], [0.6, 0.3, 0.1]])
    out = RouterOutput(experts=torch.tensor([[0], [1], [0], [2]]), weights=torch.ones(4, 1), probs=probs)
    metrics = recovery_metrics(out)
    assert metrics["accuracy"] == pytest.approx(0.5)  # rows 2 and 3 put expert 0 first
    assert "accuracy" not in routing_metrics(out)  # the generic metrics know nothing of expert 0
    entropies = [-sum(p * math.log(p) for p in row if p > 0) for row in probs.tolist()]
    assert entropies[2] == 0 and metrics["entropy"] == pytest.approx(sum(entropies) / 4)
    assert metrics["load"] == pytest.approx([0.5, 0.25, 0.25])
    tied = RouterOutput(experts=torch.zeros(2, 1, dtype=torch.long), weights=torch.ones(2, 1),
                        probs=torch.tensor([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]]))
    assert recovery_metrics(tied)["accuracy"] == 0.0  # a tie is not a choice of expert 0


def test_checkpoint_round_trip(base, tmp_path):
    model = recovery_model(base, [1], "sim", 0.1, {"method": "rpo", "weight_std": 0.2}, k=2, seed=5).eval()
    save_gpt(model, tmp_path / "model.pt")
    loaded = load_gpt(tmp_path / "model.pt").eval()
    assert loaded.config == model.config
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    idx = tokens()
    torch.testing.assert_close(loaded(idx).logits, model(idx).logits, rtol=0, atol=0)
    torch.testing.assert_close(loaded.routers()[0].weight_policy.bias, model.routers()[0].weight_policy.bias)


@pytest.mark.parametrize("layers, mode, scale, num_experts, message", [
    ([2], "diff", 0.0, 4, "layers must be"),
    ([-1], "diff", 0.0, 4, "layers must be"),
    ([], "diff", 0.0, 4, "layers must be"),
    ([0, 0], "diff", 0.0, 4, "layers must be"),
    ([0], "same", 0.0, 4, "unknown recovery mode"),
    ([0], "sim", -0.1, 4, "scale must be"),
    ([0], "sim", 0.1, 1, "num_experts >= 2"),
])
def test_bad_recovery_arguments(base, layers, mode, scale, num_experts, message):
    with pytest.raises(ValueError, match=message):
        recovery_model(base, layers, mode, scale, SOFTMAX, num_experts=num_experts)


def test_bad_model_inputs(base):
    moe = recovery_model(base, [0], "diff", 0.0, SOFTMAX)
    with pytest.raises(ValueError, match="must be dense"):
        recovery_model(moe, [1], "diff", 0.0, SOFTMAX)
    with pytest.raises(ValueError, match="exceeds block_size"):
        base(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        GPT(GPTConfig(n_layer=2, n_head=2, n_embd=8, moe_layers=(2,)))
    with pytest.raises(ValueError, match="divisible"):
        GPT(GPTConfig(n_layer=1, n_head=3, n_embd=8))
    with pytest.raises(ValueError, match="k=5"):
        recovery_model(base, [0], "diff", 0.0, SOFTMAX, k=5)


def test_unsupported_hugging_face_settings_are_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=VOCAB, n_positions=16, bos_token_id=0,
                        eos_token_id=0, activation_function="relu")
    GPT2LMHeadModel(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="activation_function"):
        from_hf(tmp_path)


def test_every_router_method_sees_the_same_experts(base):
    """The distractors depend on the seed only, not on the router (whose parameters also come from the seed)."""
    a = recovery_model(base, [0, 1], "diff", 0.0, SOFTMAX, seed=3)
    b = recovery_model(base, [0, 1], "diff", 0.0, {"method": "rpo", "weight_std": 0.2}, k=2, seed=3)
    c = recovery_model(base, [0, 1], "diff", 0.0, SOFTMAX, seed=4)
    experts = [lambda m, i=i: m.transformer.h[i].mlp.experts.state_dict() for i in (0, 1)]
    for get in experts:
        assert all(torch.equal(v, get(b)[key]) for key, v in get(a).items())
        assert not all(torch.equal(v, get(c)[key]) for key, v in get(a).items())


def test_a_padded_vocabulary_gives_the_unpadded_models_logits_and_loss():
    torch.manual_seed(0)
    plain = GPT(GPTConfig(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()
    padded = GPT(GPTConfig(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=16, vocab_multiple=64)).eval()
    assert padded.lm_head.weight.shape[0] == 64 * -(-VOCAB // 64) > VOCAB
    with torch.no_grad():
        for name, value in plain.state_dict().items():
            padded.state_dict()[name][:len(value)].copy_(value)
    idx = tokens()
    with torch.no_grad():
        want, got = plain(idx, targets=idx), padded(idx, targets=idx)
    assert got.logits.shape == want.logits.shape
    torch.testing.assert_close(got.logits, want.logits)
    torch.testing.assert_close(got.token_loss, want.token_loss)


def test_hugging_face_weights_load_into_a_padded_vocabulary(hf_checkpoint):
    model = from_hf(hf_checkpoint[0], vocab_multiple=64).eval()
    idx = tokens()
    with torch.no_grad():
        expected = hf_checkpoint[1](idx).logits
        out = model(idx, targets=idx)
    assert model.transformer.wte.weight.shape[0] % 64 == 0 and model.config.vocab_size == VOCAB
    assert torch.allclose(out.logits, expected, atol=1e-5), (out.logits - expected).abs().max()
