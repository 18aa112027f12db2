"""Effects with 95% intervals over seeds, and the three-valued verdict they support.

An effect is a number measured over seeds: a mean, a difference between two arms, or a share of seeds. Its
interval is Student's t over seeds (the paired t on per-seed differences when both arms ran the same seeds,
else Welch's). With the 2-20 seeds these experiments run, a bootstrap over seeds is too narrow: a resampled
mean cannot leave the observed range, and two seeds give only three distinct resamples; the t interval widens
with small n as it should. A share of seeds (a yes/no outcome per seed) gets the Wilson score interval, which
stays inside [0, 1] and is not a point at 0/n or n/n.

A comparison asks on which side of a threshold the effect lies: `reproduced` when the whole interval is on the
claim's side, `refuted` when it is wholly on the other side, `inconclusive` otherwise or with too few seeds."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

REPRODUCED, REFUTED, INCONCLUSIVE = "reproduced", "refuted", "inconclusive"
VERDICTS = (REPRODUCED, REFUTED, INCONCLUSIVE)
LEVEL = 0.95
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


def mean_effect(label: str, values: pd.Series) -> Effect:
    """The mean over seeds with its t interval (a point for one seed: `judge` calls it too few seeds)."""
    x = _finite(values, label)
    n = x.size
    if n < 2:
        return Effect(label, float(x.mean()), float(x.mean()), float(x.mean()), n, "t over seeds")
    low, high = _t_interval(x.mean(), x.std(ddof=1) / math.sqrt(n), n - 1)
    return Effect(label, float(x.mean()), float(low), float(high), n, "t over seeds")


def difference(label: str, a: pd.Series, b: pd.Series) -> Effect:
    """mean(a) - mean(b), both indexed by seed: paired t where the seeds are the same, Welch's t otherwise."""
    if a.index.has_duplicates or b.index.has_duplicates:
        raise ValueError(f"{label!r}: an arm has two rows for one seed")
    if set(a.index) == set(b.index):
        effect = mean_effect(label, a - b.loc[a.index])
        return Effect(label, effect.value, effect.low, effect.high, effect.n, "paired t over seeds")
    x, y = _finite(a, label), _finite(b, label)
    value = float(x.mean() - y.mean())
    if min(x.size, y.size) < 2:
        return Effect(label, value, value, value, min(x.size, y.size), "Welch t over seeds")
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    dof = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1)) if se > 0 else math.inf
    low, high = _t_interval(value, se, dof)
    return Effect(label, value, float(low), float(high), min(x.size, y.size), "Welch t over seeds")


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


@dataclass(frozen=True)
class Comparison:
    effect: Effect
    side: str          # the claim's side of the threshold: one of SIDES
    threshold: float

    def judge(self, min_seeds: int) -> tuple[str, str]:
        """(verdict, reason) of this comparison."""
        e, holds = self.effect, SIDES[self.side]
        if e.from_seeds and e.n < min_seeds:
            return INCONCLUSIVE, f"{e.label}: too few seeds ({e.n}; the config asks for {min_seeds})"
        if holds(e.low, self.threshold) and holds(e.high, self.threshold):
            return REPRODUCED, f"{e.label}: the interval lies wholly {self.side} {self.threshold:g}"
        if not holds(e.low, self.threshold) and not holds(e.high, self.threshold):
            return REFUTED, f"{e.label}: the interval lies wholly on the other side of {self.side} {self.threshold:g}"
        return INCONCLUSIVE, f"{e.label}: the interval contains {self.threshold:g}"

    def as_dict(self, min_seeds: int) -> dict:
        verdict, reason = self.judge(min_seeds)
        return {**asdict(self.effect), "side": self.side, "threshold": self.threshold, "verdict": verdict,
                "reason": reason}


def combine(comparisons: list[Comparison], min_seeds: int) -> tuple[str, str]:
    """The verdict of a claim that needs every comparison: reproduced when all are, refuted when any is, else
    inconclusive; the reason names the comparisons that decided it."""
    judged = [comparison.judge(min_seeds) for comparison in comparisons]
    for verdict in (REFUTED, INCONCLUSIVE):
        reasons = [reason for v, reason in judged if v == verdict]
        if reasons:
            return verdict, "; ".join(reasons)
    return REPRODUCED, "every 95% interval lies on the claim's side of its threshold"
