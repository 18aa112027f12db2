"""The toys train many seeds side by side: a seed's numbers do not depend on the seeds beside it, and a router
that declares itself seed_batched trains batched exactly as one seed after another."""
import pytest
import torch

from moe_rpo import config as cfg
from moe_rpo import sections
from moe_rpo.routers import METHODS, Router
from moe_rpo.routers.noise import drawing_from, normal_like, sample_without_replacement
from moe_rpo.toy import barrier, collapse, dilemma, routing
from moe_rpo.toy.fixed_experts import greedy, make_routers, mix, train
from moe_rpo.toy.settings import FixedExpertsSettings

MODULES = {"routing": routing, "collapse": collapse, "dilemma": dilemma, "barrier": barrier}


def settings_of(experiment, seeds, steps=30):
    settings = sections.experiment_settings(cfg.validate({}), experiment)
    settings.update(steps=steps, seeds=list(seeds), shown_seed=seeds[0])
    if experiment == "collapse":
        settings["log_every"] = 10
    return settings


def rows(records, seed):
    return [r for r in records if r["seed"] == seed]


@pytest.mark.parametrize("experiment", MODULES)
def test_a_seed_run_among_others_gives_what_it_gives_alone(experiment):
    """Exact: every seed has its own copy, its own initialisation and its own random stream, and the batched
    arithmetic is elementwise per seed (the gates' matmuls have one or three terms)."""
    seeds = [5, 0, 3, 9]
    _, together = MODULES[experiment].run(settings_of(experiment, seeds))
    for seed in (5, 3):
        _, alone = MODULES[experiment].run(settings_of(experiment, [seed]))
        assert rows(together, seed) == alone


def fixed_expert_run(spec, seeds, batched, steps=25, k=2):
    """Toy 1 with one router per seed, batched or seed after seed; the greedy outputs [S, steps + 1, 2]."""
    settings = settings_of("routing", seeds, steps)
    experts = torch.tensor(settings["experts"], dtype=torch.float32)
    target = torch.tensor(settings["target"], dtype=torch.float32)
    routers = make_routers(spec, seeds, len(experts), k, batched=batched)
    outputs = []
    train(routers, FixedExpertsSettings.of(settings), lambda out: ((mix(out, experts) - target) ** 2).sum(-1),
          lambda: outputs.append(greedy(routers, lambda out: mix(out, experts)[0])))
    return torch.stack(outputs, 1)


# MoE++ is refused in the toys (its null experts need token features)
BATCHED = sorted(name for name, cls in METHODS.items() if cls.seed_batched and not cls.adds_null_experts)


def test_the_routers_the_toys_compare_train_batched():
    assert {"softmax_topk", "jitter", "reinforce", "rpo", "em"} <= set(BATCHED)


@pytest.mark.parametrize("method", BATCHED)
def test_a_seed_batched_router_trains_batched_as_seed_after_seed(method):
    assert METHODS[method].update is Router.update  # no state between steps
    spec = {"method": method}
    k = 1 if METHODS[method].max_k == 1 else 2
    batched = fixed_expert_run(spec, [0, 1, 2], batched=True, k=k)
    one_by_one = fixed_expert_run(spec, [0, 1, 2], batched=False, k=k)
    # vmapped and plain kernels may round the last bit differently (softmax, sums over experts)
    torch.testing.assert_close(batched, one_by_one, rtol=1e-5, atol=1e-6)


def test_a_stream_draws_what_the_default_draws_in_distribution():
    uniforms = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    with drawing_from(uniforms):
        normal = normal_like(torch.empty(100_000))
    assert abs(normal.mean()) < 0.02 and abs(normal.std() - 1) < 0.02
    probs = torch.tensor([[0.6, 0.3, 0.1]]).expand(20_000, 3)
    with drawing_from(torch.rand(60_000, generator=torch.Generator().manual_seed(1))):
        first = sample_without_replacement(probs, 2)[:, 0]
    shares = torch.bincount(first, minlength=3) / len(first)
    torch.testing.assert_close(shares, torch.tensor([0.6, 0.3, 0.1]), atol=0.015, rtol=0)


def test_a_router_that_draws_more_than_its_stream_holds_is_named():
    with drawing_from(torch.rand(10)), pytest.raises(RuntimeError, match="random numbers its seed's stream holds"):
        normal_like(torch.empty(11))
