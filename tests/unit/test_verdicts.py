"""Effects, their 95% intervals over seeds and the verdicts they give, against textbook values."""
import gc
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from moe_rpo.verdicts import (
    INCONCLUSIVE,
    MAX_SEEDS,
    ONE_SIDED,
    REFUTED,
    REPRODUCED,
    Comparison,
    combine,
    difference,
    exact,
    holm_rejects,
    mean_effect,
    share,
)


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
    verdict, reason = combine([ok, unsure, bad], 2)  # one refuted test refutes the claim, after Holm's correction
    assert (verdict, reason) == (REFUTED, bad.judge(2)[1] + " (Holm-corrected over 3 comparisons)")


def test_a_non_finite_number_never_decides_a_verdict():
    with pytest.raises(ValueError, match="non-finite"):
        mean_effect("loss", seeds(1.0, float("nan")))


def test_a_refutation_by_one_of_several_comparisons_is_holm_corrected():
    """Alone, a t interval just beyond the threshold refutes; among three comparisons Holm's step-down asks for
    p below 0.025 / 3 first, so the same numbers leave the claim inconclusive; a clear refutation still refutes."""
    just = Comparison(mean_effect("just", seeds(-0.2, -0.3, -0.25, -0.05, -0.1)), ">", 0)
    assert just.judge(2)[0] == REFUTED
    assert ONE_SIDED / 3 < just.p_refuting() < ONE_SIDED
    holds = Comparison(exact("holds", 1.0), ">", 0)
    assert combine([just], 2)[0] == REFUTED
    verdict, reason = combine([just, holds, holds], 2)
    assert verdict == INCONCLUSIVE and "not after Holm's correction over 3" in reason
    clear = Comparison(mean_effect("clear", seeds(-1.0, -1.1, -0.9, -1.05, -0.95)), ">", 0)
    assert combine([clear, holds, holds], 2)[0] == REFUTED


def test_the_p_value_agrees_with_the_interval_for_one_comparison():
    for values in [(0.1, 0.2, 0.3), (-0.1, 0.05, 0.2), (-0.3, -0.2, -0.1)]:
        c = Comparison(mean_effect("x", seeds(*values)), ">", 0.0)
        assert (c.judge(2)[0] == REFUTED) == (c.p_refuting() < ONE_SIDED)
    wilson = Comparison(share("to B", pd.Series([True] * 3 + [False] * 17)), ">=", 0.8)
    assert (wilson.judge(2)[0] == REFUTED) == (wilson.p_refuting() < ONE_SIDED) == True


def test_power_gives_the_smallest_detectable_effect_and_the_seeds_that_would_decide():
    x = seeds(0.7, 0.9, 0.75, 0.95)  # mean 0.825, sd 0.119
    c = Comparison(mean_effect("acc", x, bounds=(0, 1)), ">=", 0.8)
    power = c.power()
    sd = x.std(ddof=1)
    assert power["mde"] == pytest.approx(TTestPower().solve_power(nobs=4, alpha=0.05, power=0.8) * sd)
    d = (x.mean() - 0.8) / sd
    assert power["seeds_to_decide"] == math.ceil(TTestPower().solve_power(effect_size=d, alpha=0.05, power=0.8))
    verdict, reason = c.judge(2)
    assert verdict == INCONCLUSIVE and reason.endswith(f"about {power['seeds_to_decide']} seeds would decide it")
    on = Comparison(mean_effect("on", seeds(0.7, 0.9, 0.7, 0.9)), ">=", 0.8)
    assert on.power()["seeds_to_decide"] > MAX_SEEDS and "not decidable by more seeds" in on.judge(2)[1]
    assert Comparison(exact("b", 1.0), ">", 0).power() == {"mde": None, "seeds_to_decide": None}


def test_an_interval_stays_inside_its_metrics_range():
    acc = mean_effect("SIM accuracy", seeds(0.0, 1.0, 0.1), bounds=(0.0, 1.0))
    assert 0.0 <= acc.low < acc.high <= 1.0
    unbounded = mean_effect("SIM accuracy", seeds(0.0, 1.0, 0.1))
    assert unbounded.low < 0 and unbounded.high > 1  # what the clipping removes
    assert Comparison(acc, ">=", 0.9).judge(2)[0] == INCONCLUSIVE


def test_holms_step_down_decides_as_statsmodels_does(monkeypatch):
    """Ties, p-values on a threshold, all or none rejected, one hypothesis: the same decisions as
    `multipletests(method="holm")`, the reference implementation."""
    monkeypatch.setattr(gc, "collect", lambda: 0)  # the reference's gc.collect() per call: 0.2 s each here
    rng = np.random.default_rng(0)
    cases = [[], [0.01], [0.05], [0.02, 0.02], [0.025, 0.05], [0.5, 0.001, 0.0125, 0.0125], [1.0, 1.0]]
    cases += [list(rng.uniform(0, 0.1, size=n)) for n in range(1, 9) for _ in range(50)]
    cases += [list(rng.choice([0.001, 0.01, 0.02, 0.03], size=n)) for n in range(1, 6) for _ in range(20)]
    for p_values in cases:
        expected = multipletests(p_values, alpha=0.05, method="holm")[0] if p_values else []
        assert holm_rejects(p_values, 0.05).tolist() == list(expected), p_values
