"""The per-token oracle of a recovery model, checked against the same losses computed by model surgery
(the layer's MLP replaced by one expert), which shares no code with the oracle's fixed routing."""
import copy

import numpy as np
import pytest
import torch

from moe_rpo import schema
from moe_rpo.lm.oracle import fixed_routing, oracle, token_losses
from moe_rpo.models import GPT, GPTConfig, recovery_model
from moe_rpo.models.gpt import MLP
from moe_rpo.training.settings import TrainSettings

VOCAB = 32
SETTINGS = TrainSettings.of(schema.validate_definition({"batch_size": 4, "block_size": 16, "eval_batches": 2, "device": "cpu"}, "lm_train"))
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokens():
    return (np.arange(3000) * 7 % VOCAB).astype(np.uint16)


def base():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()


def with_expert(model, layer, expert):
    """The dense model whose MLP in `layer` is that MoE layer's expert (and expert 0 in every other layer)."""
    dense = copy.deepcopy(model)
    for i, block in enumerate(dense.transformer.h):
        mlp = MLP(model.config)
        mlp.load_state_dict(block.mlp.experts.mlp_state(expert if i == layer else 0))
        block.mlp = mlp
    return dense


@pytest.mark.parametrize("mode, scale", [("diff", 0.0), ("sim", 0.5)])
def test_the_oracle_matches_losses_computed_by_surgery(tokens, mode, scale):
    model = recovery_model(base(), [0, 1], mode, scale, {"method": "softmax_topk"}, seed=3)
    found = oracle(model, tokens, SETTINGS, CPU)
    expert0 = token_losses(with_expert(model, 0, 0), tokens, SETTINGS, CPU)
    assert found["expert0_loss"] == pytest.approx(expert0.mean().item(), abs=1e-6)
    for layer in found["layers"]:
        losses = torch.stack([token_losses(with_expert(model, layer["layer"], e), tokens, SETTINGS, CPU)
                              for e in range(4)])
        assert layer["oracle_loss"] == pytest.approx(losses.min(0).values.mean().item(), abs=1e-6)
        assert layer["identifiability"] == pytest.approx((losses[0] < losses[1:].min(0).values).float().mean().item())
        assert sum(layer["best_expert_share"]) == pytest.approx(1.0)
    assert found["oracle_loss"] <= found["expert0_loss"]  # expert 0 is one of the candidates
    assert found["oracle_loss"] == min(layer["oracle_loss"] for layer in found["layers"])


def test_all_expert_0_is_the_pretrained_model(tokens):
    dense = base()
    model = recovery_model(dense, [0, 1], "diff", 0.0, {"method": "softmax_topk"}, seed=0)
    assert oracle(model, tokens, SETTINGS, CPU)["expert0_loss"] == pytest.approx(
        token_losses(dense, tokens, SETTINGS, CPU).mean().item(), abs=1e-6)


def test_exact_copies_are_never_identifiable(tokens):
    """SIM at scale 0: every distractor equals expert 0, so expert 0 is never strictly best (a tie is a miss)."""
    found = oracle(recovery_model(base(), [1], "sim", 0.0, {"method": "softmax_topk"}, seed=0), tokens, SETTINGS, CPU)
    assert found["identifiability"] == 0.0 and found["oracle_loss"] == pytest.approx(found["expert0_loss"])


def test_fixed_routing_gives_the_routers_back(tokens):
    model = recovery_model(base(), [0, 1], "diff", 0.0, {"method": "softmax_topk"}, seed=0)
    routers = [block.mlp.router for block in model.transformer.h]
    with pytest.raises(RuntimeError), fixed_routing(model, {0: 2}):
        assert model.transformer.h[0].mlp.router.expert == 2 and model.transformer.h[1].mlp.router.expert == 0
        raise RuntimeError
    assert [block.mlp.router for block in model.transformer.h] == routers
