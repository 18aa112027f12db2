"""Effects, their 95% intervals over seeds and the verdicts they give, against textbook values."""
import math

import pandas as pd
import pytest
from scipy import stats

from moe_rpo.verdicts import (INCONCLUSIVE, REFUTED, REPRODUCED, Comparison, combine, difference, exact, mean_effect,
                              share)


def seeds(*values, first=0):
    return pd.Series(values, index=range(first, first + len(values)), dtype=float)


def test_the_mean_interval_is_students_t():
    x = seeds(1.0, 2.0, 4.0)
    effect = mean_effect("x", x)
    half = stats.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
    assert (effect.value, effect.n) == (pytest.approx(7 / 3), 3)
    assert (effect.low, effect.high) == (pytest.approx(7 / 3 - half), pytest.approx(7 / 3 + half))
    assert mean_effect("two seeds", seeds(0.0, 1.0)).high == pytest.approx(0.5 + 12.706 * 0.5, rel=1e-4)


def test_a_difference_is_paired_by_seed_when_the_arms_share_seeds():
    a, b = seeds(1.0, 2.0, 3.0), seeds(0.9, 1.9, 2.9)
    paired = difference("a - b", a, b)
    assert paired.method == "paired t over seeds"
    assert (paired.low, paired.high) == (pytest.approx(0.1), pytest.approx(0.1))  # the pairs all differ by 0.1
    assert difference("reordered", a, b.iloc[::-1]).low == pytest.approx(0.1)  # matched by seed, not position


def test_a_difference_over_different_seeds_is_welchs():
    a, b = seeds(1.0, 2.0, 3.0), seeds(0.0, 0.5, 1.0, 1.5, first=10)
    effect = difference("a - b", a, b)
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert effect.method == "Welch t over seeds" and effect.n == 3
    assert (effect.low, effect.high) == (pytest.approx(welch.low), pytest.approx(welch.high))


def test_a_share_gets_the_wilson_interval():
    effect = share("to B", pd.Series([True] * 20))
    assert (effect.value, effect.high) == (1.0, 1.0)
    assert effect.low == pytest.approx(20 / (20 + 1.959964 ** 2))  # Wilson's lower bound at 20 of 20
    none = share("to B", pd.Series([False] * 5))
    assert none.low == 0.0 and none.high == pytest.approx(0.4345, abs=1e-4)


@pytest.mark.parametrize("values, side, threshold, verdict", [
    ((0.01, 0.02, 0.03), "<", 0.05, REPRODUCED),
    ((0.10, 0.11, 0.12), "<", 0.05, REFUTED),
    ((0.01, 0.05, 0.09), "<", 0.05, INCONCLUSIVE),
    ((0.95, 0.96, 0.97), ">=", 0.9, REPRODUCED),
    ((0.9, 0.9, 0.9), ">=", 0.9, REPRODUCED),  # on the threshold with no spread: >= holds
    ((0.9, 0.9, 0.9), ">", 0.9, REFUTED),
])
def test_a_test_compares_the_whole_interval_with_the_threshold(values, side, threshold, verdict):
    assert Comparison(mean_effect("x", seeds(*values)), side, threshold).judge(min_seeds=2)[0] == verdict


def test_too_few_seeds_is_inconclusive_and_says_so():
    verdict, reason = Comparison(mean_effect("x", seeds(0.01, 0.02)), "<", 0.05).judge(min_seeds=3)
    assert verdict == INCONCLUSIVE and reason == "x: too few seeds (2; the config asks for 3)"
    assert Comparison(exact("barrier", 0.4), ">", 0).judge(min_seeds=3)[0] == REPRODUCED  # computed once: no seeds


def test_a_claim_needs_every_test():
    ok, bad = Comparison(exact("a", 1.0), ">", 0), Comparison(exact("b", -1.0), ">", 0)
    unsure = Comparison(mean_effect("c", seeds(-1.0, 1.0)), ">", 0)
    assert combine([ok, ok], 2)[0] == REPRODUCED
    assert combine([ok, unsure], 2) == (INCONCLUSIVE, unsure.judge(2)[1])
    assert combine([ok, unsure, bad], 2) == (REFUTED, bad.judge(2)[1])  # one refuted test refutes the claim


def test_a_non_finite_number_never_decides_a_verdict():
    with pytest.raises(ValueError, match="non-finite"):
        mean_effect("loss", seeds(1.0, float("nan")))
