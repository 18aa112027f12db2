"""Each of the ten toy claims turns on its own numbers: synthetic per-seed tables where the claim holds, where
it fails and where the seeds disagree give 'reproduced', 'refuted' and 'inconclusive' for that claim."""
import pandas as pd
import pytest

from moe_rpo import config as cfg
from moe_rpo.claims import (
    barrier_claims,
    collapse_claims,
    dilemma_claims,
    routing_claims,
)
from moe_rpo.verdicts import INCONCLUSIVE, REFUTED, REPRODUCED

T = cfg.validate({})["claims"]  # reach 0.05, stall gap 0.1, collapse ratio 0.8, routing share 0.8
SEEDS = range(20)  # a share of seeds needs about 16 to clear a 0.8 threshold at 95% (Wilson)


def at(value, seed):
    """A number for every seed, or a list cycled over the seeds (seeds that disagree)."""
    return value[seed % len(value)] if isinstance(value, list) else value


def table(rows, steps=2000, **constant):
    return pd.DataFrame([{key: at(value, seed) for key, value in row.items()} | constant
                         | {"seed": seed, "steps": steps} for row in rows for seed in SEEDS])


def routing_table(rpo_distance=0.01, stall_gap=0.3, standard_k1_gap=0.05):
    rows = [{"method": "rpo", "k": 2, "final_distance": rpo_distance, "gap_to_optimum": rpo_distance}]
    rows += [{"method": m, "k": 2, "final_distance": stall_gap, "gap_to_optimum": stall_gap}
             for m in ("standard", "jitter", "rl")]
    return table(rows + [{"method": "standard", "k": 1, "final_distance": 0.0, "gap_to_optimum": standard_k1_gap}])


def collapse_table(standard_ratio=0.5, rpo_ratio=1.0, norm_with_decay=1.0):
    return table([{"method": "standard", "weight_decay": 0.0, "pairwise_distance_ratio": standard_ratio,
                   "final_router_norm": 3.0},
                  {"method": "standard", "weight_decay": 0.1, "pairwise_distance_ratio": standard_ratio,
                   "final_router_norm": norm_with_decay},
                  {"method": "rpo", "weight_decay": 0.0, "pairwise_distance_ratio": rpo_ratio, "final_router_norm": 1.0}])


def dilemma_table(standard_distance=0.3, rpo_distance=0.01):
    rows = [{"method": m, "final_distance": standard_distance} for m in ("standard", "standard_normalized")]
    return table(rows + [{"method": "rpo", "final_distance": rpo_distance}], standard_reachable_distance=0.2)


def barrier_table(standard_to_b=False, rpo_to_b=True, barrier_height=0.4):
    return table([{"method": "standard", "k": 2, "routes_to_b": standard_to_b},
                  {"method": "rpo", "k": 1, "routes_to_b": rpo_to_b}], barrier_height=barrier_height)


CASES = [  # (claims, table maker, claim id, arguments that refute it, arguments that leave it open)
    (routing_claims, routing_table, "toy_rpo_k2_reaches_target", {"rpo_distance": 0.2},
     {"rpo_distance": [0.01, 0.09]}),
    (routing_claims, routing_table, "toy_standard_variants_stall_k2", {"stall_gap": 0.05, "standard_k1_gap": 0.01},
     {"stall_gap": [0.05, 0.15]}),
    (routing_claims, routing_table, "toy_standard_worse_with_k2", {"standard_k1_gap": 0.5},
     {"standard_k1_gap": [0.1, 0.5]}),
    (collapse_claims, collapse_table, "toy_collapse_standard_pulls_experts_together", {"standard_ratio": 0.9},
     {"standard_ratio": [0.6, 1.0]}),
    (collapse_claims, collapse_table, "toy_collapse_rpo_keeps_experts_apart", {"rpo_ratio": 0.5},
     {"rpo_ratio": [0.6, 1.0]}),
    (collapse_claims, collapse_table, "toy_collapse_weight_decay_bounds_router_norm", {"norm_with_decay": 4.0},
     {"norm_with_decay": [1.0, 5.0]}),
    (dilemma_claims, dilemma_table, "toy_dilemma_standard_cannot_weight", {"standard_distance": 0.05},
     {"standard_distance": [0.05, 0.15]}),
    (dilemma_claims, dilemma_table, "toy_dilemma_rpo_free_weights", {"rpo_distance": 0.2},
     {"rpo_distance": [0.01, 0.09]}),
    (barrier_claims, barrier_table, "toy_barrier_gradient_routing_stuck", {"standard_to_b": True},
     {"standard_to_b": [True, False, False]}),
    (barrier_claims, barrier_table, "toy_barrier_rpo_crosses", {"rpo_to_b": False},
     {"rpo_to_b": [True, True, False]}),
]


def verdict(claims, table, claim_id):
    return {c["id"]: c["verdict"] for c in claims(table, T)}[claim_id]


@pytest.mark.parametrize("claims, make, claim_id, refuting, open_", CASES, ids=[case[2] for case in CASES])
def test_a_toy_claim_takes_each_verdict_with_its_numbers(claims, make, claim_id, refuting, open_):
    assert verdict(claims, make(), claim_id) == REPRODUCED
    assert verdict(claims, make(**refuting), claim_id) == REFUTED
    assert verdict(claims, make(**open_), claim_id) == INCONCLUSIVE


def test_a_barrier_that_is_not_there_refutes_the_stuck_claim():
    assert verdict(barrier_claims, barrier_table(barrier_height=-0.1), "toy_barrier_gradient_routing_stuck") == REFUTED


def test_every_toy_claim_is_covered():
    ids = {c["id"] for claims, make in {(c, m) for c, m, *_ in CASES} for c in claims(make(), T)}
    assert ids == {case[2] for case in CASES} and len(ids) == 10


@pytest.mark.parametrize("claims, make, claim_id, refuting, open_", CASES, ids=[case[2] for case in CASES])
def test_a_toy_run_shorter_than_the_papers_is_inconclusive_and_says_so(claims, make, claim_id, refuting, open_):
    """The paper's toys train 2000 steps: a refutation from 200 (the smoke config) is no refutation."""
    short = make(**refuting)
    short["steps"] = 200
    claim = {c["id"]: c for c in claims(short, T)}[claim_id]
    assert claim["verdict"] == INCONCLUSIVE
    assert claim["reason"].startswith("below the paper's regime: 200 training steps, the paper's effect needs 2000")
    assert claim["reason"].endswith("(the intervals alone: refuted)")


@pytest.mark.parametrize("claims, make, claim_id, refuting, open_", CASES, ids=[case[2] for case in CASES])
def test_an_undecided_claim_says_what_would_decide_it(claims, make, claim_id, refuting, open_):
    decided = {c["id"]: c for c in claims(make(), T)}[claim_id]
    assert decided["to_decide"] is None
    undecided = {c["id"]: c for c in claims(make(**open_), T)}[claim_id]
    assert undecided["to_decide"].startswith(("about ", "not decidable by more seeds")), undecided["to_decide"]
    short = make(**open_)
    short["steps"] = 200
    assert {c["id"]: c for c in claims(short, T)}[claim_id]["to_decide"] == (
        "reach the paper's regime: the default configuration (`make run`: 2000 toy steps)")
