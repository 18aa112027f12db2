"""The benchmark's routing metrics on hand examples: MaxVio, Gini and dead experts of a load, the stability of
routes between evaluations (flip rate, saturation), token-id specialisation, co-activation and the
counterfactual route regret of a frozen model."""
import numpy as np
import pytest
import torch

from moe_rpo import schema
from moe_rpo.models import GPT, GPTConfig
from moe_rpo.routers import RouterOutput
from moe_rpo.routing_metrics import RouteRegret, Specialisation, gini, max_violation, stability, summarize_layers
from moe_rpo.training.evaluation import evaluate, flip_rate, saturation
from moe_rpo.training.settings import TrainSettings

VOCAB = 16


@pytest.mark.parametrize("load, vio, gini_value", [
    ([0.25, 0.25, 0.25, 0.25], 0.0, 0.0),
    ([1.0, 0.0, 0.0, 0.0], 3.0, 0.75),        # one expert takes all: MaxVio E - 1, Gini (E - 1) / E
    ([0.5, 0.5, 0.0, 0.0], 1.0, 0.5),
])
def test_max_violation_and_gini_of_a_load(load, vio, gini_value):
    assert max_violation(load) == pytest.approx(vio) and gini(load) == pytest.approx(gini_value)


def test_layer_summary_averages_layers_and_counts_dead_experts():
    layers = [{"load": [0.5, 0.5, 0.0, 0.0], "max_vio": 1.5, "entropy": 0.1, "unrouted": 0.0},
              {"load": [0.25, 0.25, 0.25, 0.25], "max_vio": 0.5, "entropy": 0.3, "unrouted": 0.0}]
    summary = summarize_layers(layers)
    assert summary["dead_experts"] == 0.25 and summary["max_vio_global"] == 0.5
    assert summary["max_vio_batch"] == 1.0 and summary["gini"] == pytest.approx(0.25)
    assert summary["max_load_ratio"] == 1.5


def test_selected_marks_the_dispatched_experts_only():
    out = RouterOutput(experts=torch.tensor([[2, 0], [1, 3]]), weights=torch.ones(2, 2), probs=torch.ones(2, 4) / 4,
                       mask=torch.tensor([[True, False], [True, True]]))
    assert out.selected().tolist() == [[False, False, True, False], [False, True, False, True]]


def test_flip_rate_and_saturation_of_selections():
    final = torch.tensor([[[1, 0], [0, 1], [1, 0], [0, 1]]], dtype=torch.bool)  # [1 layer, 4 tokens, 2 experts]
    earlier = torch.tensor([[[1, 0], [1, 0], [1, 0], [1, 0]]], dtype=torch.bool)
    assert flip_rate(earlier, final) == 0.5 and saturation(earlier, final) == 0.5
    assert flip_rate(final, final) == 0.0 and saturation(final, final) == 1.0


def test_stability_reads_the_middle_evaluation_and_the_mean_flip_rate():
    history = [{"step": 0, "saturation": 0.2}, {"step": 5, "saturation": 0.7, "flip_rate": 0.4},
               {"step": 10, "saturation": 1.0, "flip_rate": 0.2}]
    assert stability(history) == {"saturation_mid": 0.7, "flip_rate_mean": pytest.approx(0.3)}
    assert stability([{"step": 0}]) == {"saturation_mid": None, "flip_rate_mean": None}


def moe(router, seed=0, same_experts=False):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=8, n_layer=1, n_head=2, n_embd=16, moe_layers=(0,),
                          num_experts=4, k=1, router=router))
    if same_experts:
        experts = model.transformer.h[0].mlp.experts
        with torch.no_grad():
            for weight in (experts.c_fc, experts.c_proj, experts.c_fc_bias, experts.c_proj_bias):
                weight.copy_(weight[:1].expand_as(weight))
    return model.eval()


SETTINGS = TrainSettings.of(schema.validate_definition({"batch_size": 4, "block_size": 8, "eval_batches": 2, "device": "cpu"}, "lm_train"))
TOKENS = np.random.default_rng(0).integers(0, VOCAB, 500).astype(np.uint16)


def observed(observer, model):
    """An observer's result over the evaluation pass, which still gives the result of a plain evaluation."""
    observer = observer(model)
    result = evaluate(model, TOKENS, SETTINGS, torch.device("cpu"), observers=[observer])
    assert result == evaluate(model, TOKENS, SETTINGS, torch.device("cpu"))
    return observer.result()


def specialisation(model):
    return observed(Specialisation, model)


def counterfactual_regret(model):
    return observed(RouteRegret, model)


def test_hash_routing_is_fully_token_specialised_and_co_activation_has_unit_diagonal():
    result = specialisation(moe({"method": "hash"}))
    assert result["token_specialisation"] == pytest.approx(1.0)
    used = [i for i in range(4) if result["coactivation"][i][i] > 0]
    assert all(result["coactivation"][i][i] == 1.0 for i in used)
    assert all(result["coactivation"][i][j] == 0.0 for i in used for j in range(4) if j != i)  # k = 1


def test_learned_routing_of_random_features_is_less_token_specialised_than_hashing():
    std = {"method": "softmax_topk", "init_std": 1.0}  # features mix token and position: ids meet several experts
    assert specialisation(moe(std))["token_specialisation"] < 0.99


def test_counterfactual_regret_is_zero_when_every_route_is_the_same_and_positive_otherwise():
    assert counterfactual_regret(moe({"method": "softmax_topk"}, same_experts=True)) == 0
    assert counterfactual_regret(moe({"method": "softmax_topk"})) > 0
    dense = GPT(GPTConfig(vocab_size=VOCAB, block_size=8, n_layer=1, n_head=2, n_embd=16))
    assert counterfactual_regret(dense) is None


def test_coactivation_rows_average_over_the_seeds_where_the_expert_was_used():
    from moe_rpo.figures.training import _mean_over_using_seeds

    seed0 = np.array([[1.0, 0.5, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # expert 2 unused
    seed1 = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.5, 0.0, 1.0]])
    mean = _mean_over_using_seeds(np.array([seed0, seed1]))
    np.testing.assert_allclose(mean[:2], [[1.0, 0.25, 0.5], [0.5, 1.0, 0.0]])
    np.testing.assert_allclose(mean[2], seed1[2])  # only the seed that used it
    assert np.isnan(_mean_over_using_seeds(np.array([seed0]))[2]).all()  # never used: a blank row


def test_coactivation_figure_reads_only_the_shakespeare_runs_among_the_benchmarks_records(tmp_path):
    from moe_rpo.figures.training import coactivation_figure

    def shakespeare(router, k, matrix):
        return {"experiment": "shakespeare_moe", "result": {"router": router, "k": k, "final": {"coactivation": matrix}}}

    records = [{"experiment": "routing", "records": []}, {"experiment": "recovery", "runs": {}},
               shakespeare("standard", 1, np.eye(2).tolist()), shakespeare("standard", 2, [[1.0, 0.5], [1.0, 1.0]])]
    written = coactivation_figure(records, tmp_path, ("shakespeare_moe",))
    assert [path.name for path in written] == ["lm_benchmark_coactivation.png", "lm_benchmark_coactivation.pdf"]
    assert written[0].stat().st_size > 1000
