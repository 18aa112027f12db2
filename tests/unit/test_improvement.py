"""The router benchmark's probabilities of improvement and ranks (rliable's definitions), against scipy."""
import numpy as np
import pytest
from scipy import stats

from moe_rpo.improvement import (
    improvement,
    improvement_table,
    oriented,
    probability_of_improvement,
    rank_table,
    separable,
)


def test_the_probability_of_improvement_is_the_mann_whitney_u_over_m_n():
    rng = np.random.default_rng(1)
    x, y = rng.normal(0.3, 1, 12), np.round(rng.normal(0, 1, 9), 1)
    u = stats.mannwhitneyu(x, y).statistic
    assert probability_of_improvement(x, y) == pytest.approx(u / (len(x) * len(y)))
    assert probability_of_improvement(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5  # ties count half


def test_its_interval_is_scipys_percentile_bootstrap_and_the_same_every_time():
    rng = np.random.default_rng(2)
    x, y = rng.normal(1, 1, 20), rng.normal(0, 1, 20)
    first, second = improvement(x, y), improvement(x, y)
    assert first == second and first[1] < first[0] < first[2]
    assert first[1] > 0.5  # a shift of one standard deviation over 20 seeds each: resolved


def test_two_or_three_seeds_give_no_interval():
    """A complete separation of 3 against 3 seeds has exact p = 0.1: the bootstrap's [1, 1] would be no answer."""
    assert not separable(2, 2) and not separable(3, 3) and separable(4, 4) and separable(64, 2)
    assert np.isnan(improvement(np.array([2.0, 3.0, 4.0]), np.array([0.0, 0.5, 1.0]))[1])
    assert improvement(np.array([2.0, 3.0, 4.0, 5.0]), np.array([0.0, 0.5, 1.0, 1.5]))[1:] == (1.0, 1.0)


def test_scores_are_oriented_so_that_higher_is_better():
    values = np.array([0.5, 1.0, 2.0])
    assert list(oriented(values, "low")) == [-0.5, -1.0, -2.0]
    assert list(oriented(values, "one")) == [-0.5, 0.0, -1.0]


def test_the_table_counts_resolved_differences_against_each_reference():
    rng = np.random.default_rng(3)
    scores = {"loss": {"top-1": rng.normal(0, 1, 16), "better": rng.normal(2, 1, 16), "same": rng.normal(0, 1, 16),
                       "few": np.array([5.0, 6.0])}}
    table = improvement_table(scores, ["top-1", "missing"])
    assert list(table["arm"]) == ["better", "same", "few"] and set(table["reference"]) == {"top-1"}
    assert list(table["resolved"]) == [True, False, True]  # 2 seeds all above 16: p = 2 / C(18, 2) < 0.05
    ranks = rank_table(scores)
    best = ranks[ranks["arm"] == "few"].iloc[0]
    assert (best["rank"], ranks[ranks["arm"] == "better"].iloc[0]["rank"]) == (1, 2)
    assert best["rank_low"] <= best["rank"] <= best["rank_high"]
