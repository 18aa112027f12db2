"""Effects with 95% intervals over seeds, and the three-valued verdict they support.

An effect is a number measured over seeds: a mean, a difference between two arms, or a share of seeds. Its
interval is Student's t over seeds (the paired t on per-seed differences when both arms ran the same seeds,
else Welch's). With the 2-20 seeds these experiments run, a bootstrap over seeds is too narrow: a resampled
mean cannot leave the observed range, and two seeds give only three distinct resamples; the t interval widens
with small n as it should. A share of seeds (a yes/no outcome per seed) gets the Wilson score interval, which
stays inside [0, 1] and is not a point at 0/n or n/n.

An interval is clipped to the range of its metric where it has one (an accuracy or a share lies in [0, 1], a
distance is >= 0): the true mean lies in that range, so the clipped interval covers it whenever the t interval
does, with the same 95%, and it never shows impossible values.

A comparison asks on which side of a threshold the effect lies: `reproduced` when the whole interval is on the
claim's side, `refuted` when it is wholly on the other side, `inconclusive` otherwise or with too few seeds. Each
comparison also states its power (statsmodels): the smallest effect its seeds detect (two-sided alpha 0.05, power
0.8, from the observed spread) and about how many seeds would decide it, given the observed mean and spread.

A claim of several comparisons is `reproduced` when every one is (an intersection-union test: no correction), and
`refuted` when Holm's step-down correction over its m comparisons still rejects one in the refuting direction
(one-sided, at the 2.5% that a 95% two-sided interval leaves on each side; for m = 1 exactly the interval's rule)."""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.power import NormalIndPower, TTestPower
from statsmodels.stats.proportion import proportion_effectsize, proportions_ztest

REPRODUCED, REFUTED, INCONCLUSIVE = "reproduced", "refuted", "inconclusive"
VERDICTS = (REPRODUCED, REFUTED, INCONCLUSIVE)
LEVEL = 0.95
ONE_SIDED = (1 - LEVEL) / 2  # what a 95% two-sided interval leaves beyond each end
POWER = 0.8
MAX_SEEDS = 10_000  # beyond this, "more seeds" is no answer
SHARE, NONNEGATIVE = (0.0, 1.0), (0.0, math.inf)  # the ranges of accuracies and shares, and of distances and losses
SIDES = {"<": lambda x, t: x < t, "<=": lambda x, t: x <= t, ">": lambda x, t: x > t, ">=": lambda x, t: x >= t}


@dataclass(frozen=True)
class Effect:
    label: str    # what is measured: "rpo k=2 final distance", "top-2 minus RPO mean training loss"
    value: float
    low: float    # the 95% interval
    high: float
    n: int        # seeds behind it (pairs for a paired difference; the smaller arm for Welch)
    method: str   # how the interval was computed
    from_seeds: bool = True  # False: a number computed once (no interval, no seed count to check)
    se: float = 0.0         # the standard error of a t interval (0 for shares and numbers computed once)
    dof: float | None = None  # its degrees of freedom (None without spread)


def _finite(values: pd.Series, label: str) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).all():  # a diverged run must not decide a verdict
        raise ValueError(f"non-finite values {values.tolist()} for {label!r} in the results table")
    if values.size == 0:
        raise ValueError(f"no values for {label!r} in the results table")
    return values


def _t_interval(mean: float, se: float, dof: float) -> tuple[float, float]:
    if se == 0 or not math.isfinite(dof):  # every seed agrees: no spread to widen the point by
        return mean, mean
    half = stats.t.ppf(0.5 + LEVEL / 2, dof) * se
    return mean - half, mean + half


def _clipped(low: float, high: float, bounds: tuple[float, float] | None) -> tuple[float, float]:
    if bounds is None:
        return low, high
    return max(low, bounds[0]), min(high, bounds[1])


def mean_effect(label: str, values: pd.Series, bounds: tuple[float, float] | None = None) -> Effect:
    """The mean over seeds with its t interval, clipped to the metric's `bounds` (a point for one seed: `judge`
    calls it too few seeds)."""
    x = _finite(values, label)
    n, mean = x.size, float(x.mean())
    if n < 2:
        return Effect(label, mean, mean, mean, n, "t over seeds")
    se = float(x.std(ddof=1) / math.sqrt(n))
    low, high = _clipped(*_t_interval(mean, se, n - 1), bounds)
    return Effect(label, mean, float(low), float(high), n, "t over seeds", se=se, dof=n - 1)


def difference(label: str, a: pd.Series, b: pd.Series) -> Effect:
    """mean(a) - mean(b), both indexed by seed: paired t where the seeds are the same, Welch's t otherwise."""
    if a.index.has_duplicates or b.index.has_duplicates:
        raise ValueError(f"{label!r}: an arm has two rows for one seed")
    if set(a.index) == set(b.index):
        effect = mean_effect(label, a - b.loc[a.index])
        return replace(effect, method="paired t over seeds")
    x, y = _finite(a, label), _finite(b, label)
    value = float(x.mean() - y.mean())
    if min(x.size, y.size) < 2:
        return Effect(label, value, value, value, min(x.size, y.size), "Welch t over seeds")
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    dof = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1)) if se > 0 else math.inf
    low, high = _t_interval(value, se, dof)
    return Effect(label, value, float(low), float(high), min(x.size, y.size), "Welch t over seeds", se=se,
                  dof=dof if se > 0 else None)


def share(label: str, outcomes: pd.Series) -> Effect:
    """The share of seeds with a yes outcome, with its Wilson score interval."""
    x = _finite(outcomes.astype(float), label)
    n, p = x.size, float(x.mean())
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Effect(label, p, max(0.0, centre - half), min(1.0, centre + half), n, "Wilson over seeds")


def exact(label: str, value: float) -> Effect:
    """A number the experiment computes once (no seeds, no interval), such as the height of a loss barrier."""
    value = float(_finite(pd.Series([value]), label)[0])
    return Effect(label, value, value, value, 1, "computed once", from_seeds=False)


def _words(threshold: float) -> str:
    return f"{threshold:g}"


@dataclass(frozen=True)
class Comparison:
    effect: Effect
    side: str          # the claim's side of the threshold: one of SIDES
    threshold: float

    def judge(self, min_seeds: int) -> tuple[str, str]:
        """(verdict, reason) of this comparison on its own."""
        e, holds = self.effect, SIDES[self.side]
        if e.from_seeds and e.n < min_seeds:
            return INCONCLUSIVE, f"{e.label}: too few seeds ({e.n}; the config asks for {min_seeds})"
        if holds(e.low, self.threshold) and holds(e.high, self.threshold):
            return REPRODUCED, f"{e.label}: the interval lies wholly {self.side} {_words(self.threshold)}"
        if not holds(e.low, self.threshold) and not holds(e.high, self.threshold):
            return REFUTED, (f"{e.label}: the interval lies wholly on the other side of {self.side} "
                             f"{_words(self.threshold)}")
        return INCONCLUSIVE, f"{e.label}: the interval contains {_words(self.threshold)}; {self.needed_in_words()}"

    def p_refuting(self) -> float:
        """One-sided p-value of the test whose rejection says the effect lies on the other side of the threshold
        (the t test of a t interval, the score test of a Wilson interval: each inverts its interval)."""
        e, claims_above = self.effect, self.side in (">", ">=")
        wilson = e.method.startswith("Wilson")
        if not e.from_seeds or e.n == 0 or (not wilson and e.se == 0):  # no spread: the point decides
            return 0.0 if not SIDES[self.side](e.value, self.threshold) else 1.0
        if wilson:
            if self.threshold in (0.0, 1.0):  # a share cannot lie beyond 0 or 1
                return 1.0
            _, p = proportions_ztest(round(e.value * e.n), e.n, value=self.threshold, prop_var=self.threshold,
                                     alternative="smaller" if claims_above else "larger")
            return float(p)
        t = (e.value - self.threshold) / e.se
        return float(stats.t.cdf(t, e.dof) if claims_above else stats.t.sf(t, e.dof))

    @functools.cached_property  # judge, the reason and the record all ask
    def _power(self) -> dict:
        """The smallest difference from the threshold its seeds detect (two-sided alpha 0.05, power 0.8, the
        observed spread), and about how many seeds would decide it at the observed mean and spread (None: the
        spread is 0, or it is a number computed once; 'more than MAX_SEEDS' is a mean on the threshold)."""
        e = self.effect
        if not e.from_seeds or e.n < 2:
            return {"mde": None, "seeds_to_decide": None}
        alpha = 1 - LEVEL
        if e.method.startswith("Wilson"):
            p0 = min(max(self.threshold, 1e-6), 1 - 1e-6)
            h = NormalIndPower().solve_power(nobs1=e.n, alpha=alpha, power=POWER, ratio=0)
            mde = abs(math.sin(min(math.asin(math.sqrt(p0)) + h / 2, math.pi / 2)) ** 2 - p0)
            gap = abs(proportion_effectsize(min(max(e.value, 1e-6), 1 - 1e-6), p0))
            return {"mde": mde, "seeds_to_decide": self._seeds(gap, NormalIndPower(), ratio=0)}
        spread = e.se * math.sqrt(e.n)  # the per-seed standard deviation
        if spread == 0:
            return {"mde": 0.0, "seeds_to_decide": None}
        mde = TTestPower().solve_power(nobs=e.n, alpha=alpha, power=POWER) * spread
        return {"mde": float(mde), "seeds_to_decide": self._seeds(abs(e.value - self.threshold) / spread, TTestPower())}

    @staticmethod
    def _seeds(effect_size: float, analysis, **kwargs) -> int:
        """The fewest seeds (at least 2) whose power at this standardised effect reaches 0.8, by bisection on
        statsmodels' power function (its solver fails below 2 seeds and near a zero effect); MAX_SEEDS + 1
        where even MAX_SEEDS do not."""
        key = "nobs1" if isinstance(analysis, NormalIndPower) else "nobs"

        def enough(n):
            power = analysis.power(effect_size=effect_size, alpha=1 - LEVEL, **{key: n}, **kwargs)
            if math.isnan(power):  # the noncentral t fails at some large n, where the normal is exact enough
                power = NormalIndPower().power(effect_size=effect_size, nobs1=n, alpha=1 - LEVEL, ratio=0)
            return power >= POWER

        if not enough(MAX_SEEDS):
            return MAX_SEEDS + 1
        low, high = 1, MAX_SEEDS  # enough(high), and 1 seed never decides
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if enough(middle) else (middle, high)
        return high

    def power(self) -> dict:
        return dict(self._power)

    def needed_in_words(self) -> str:
        return seeds_in_words(self.power()["seeds_to_decide"])

    def as_dict(self, min_seeds: int) -> dict:
        verdict, reason = self.judge(min_seeds)
        return {**asdict(self.effect), "side": self.side, "threshold": self.threshold, "verdict": verdict,
                "reason": reason, "p_refuting": self.p_refuting(), **self.power()}


def seeds_in_words(seeds: int | None) -> str:
    """What more seeds would do, in words, for the seeds a comparison (or the neediest of a claim's) needs."""
    if seeds is None:
        return "more seeds would not change it"
    if seeds > MAX_SEEDS:
        return f"not decidable by more seeds (a mean sits on its threshold; over {MAX_SEEDS} needed)"
    return f"about {seeds} seeds would decide it"


def holm_rejects(p_values: list[float], alpha: float) -> np.ndarray:
    """Holm's step-down: which hypotheses it rejects at family-wise level `alpha` (the i-th smallest p-value,
    from 0, against alpha / (m - i), stopping at the first that fails). The same decisions as statsmodels'
    `multipletests(method="holm")` (tested), which calls `gc.collect()` on every call: 0.2 s each in a process
    that holds torch."""
    order = np.argsort(p_values)
    passes = np.asarray(p_values)[order] <= alpha / np.arange(len(order), 0, -1)
    rejected = np.zeros(len(order), dtype=bool)
    rejected[order] = np.cumprod(passes).astype(bool)  # step-down: rejected up to the first p-value that fails
    return rejected


def combine(comparisons: list[Comparison], min_seeds: int) -> tuple[str, str]:
    """The verdict of a claim that needs every comparison: reproduced when all are (intersection-union: no
    correction), refuted when Holm's correction over the m comparisons still rejects one in the refuting
    direction, else inconclusive; the reason names the comparisons that decided it."""
    judged = [comparison.judge(min_seeds) for comparison in comparisons]
    p_values = [1.0 if c.effect.from_seeds and c.effect.n < min_seeds else c.p_refuting() for c in comparisons]
    refuting = holm_rejects(p_values, ONE_SIDED)
    if refuting.any():
        reasons = "; ".join(reason for (_, reason), hit in zip(judged, refuting) if hit)
        held = f" (Holm-corrected over {len(comparisons)} comparisons)" if len(comparisons) > 1 else ""
        return REFUTED, reasons + held
    reasons = [f"{r} (not after Holm's correction over {len(comparisons)})" if v == REFUTED else r
               for (v, r) in judged if v != REPRODUCED]
    if reasons:
        return INCONCLUSIVE, "; ".join(reasons)
    return REPRODUCED, "every 95% interval lies on the claim's side of its threshold"
