"""How sure the router benchmark is of its differences, the way rliable reports many-seed results (Agarwal et
al. 2021): per metric, each arm's probability of improvement over a reference arm, P(a seed of the arm scores
better than a seed of the reference), with a percentile bootstrap interval over both arms' seeds; and each arm's
rank with a bootstrap interval. A difference is resolved when the interval of its probability excludes 0.5."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0  # the bootstrap's generator: the same tables every run


def oriented(values: np.ndarray, better: str) -> np.ndarray:
    """Scores where higher is better: 'high' as is, 'low' negated, 'one' (closest to 1 best) as -|x - 1|."""
    return {"high": values, "low": -values, "one": -np.abs(values - 1)}[better]


def probability_of_improvement(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 over every pair of a score of x and one of y (the Mann-Whitney U statistic over
    m n), along `axis` (vectorised for scipy.stats.bootstrap)."""
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    wins = (x[..., :, None] > y[..., None, :]).mean((-2, -1))
    ties = (x[..., :, None] == y[..., None, :]).mean((-2, -1))
    return wins + ties / 2


def separable(m: int, n: int) -> bool:
    """Whether m and n seeds can show a difference at all: a complete separation of the two arms (every seed of
    one above every seed of the other) is significant by the exact Mann-Whitney test (p = 2 / C(m + n, m) < 0.05).
    Below that (2 or 3 seeds an arm) the percentile bootstrap would call a separation certain, so no interval."""
    return 2 / math.comb(m + n, m) < 1 - LEVEL


def improvement(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """The probability that x improves on y, and its 95% percentile bootstrap interval (each arm's seeds
    resampled on their own, as rliable does); NaN where the arms have too few seeds (`separable`)."""
    value = float(probability_of_improvement(x, y))
    if not separable(len(x), len(y)):
        return value, np.nan, np.nan
    if np.ptp(np.concatenate([x, y])) == 0:  # every seed of both arms the same: no spread to resample
        return value, value, value
    result = stats.bootstrap((x, y), probability_of_improvement, n_resamples=RESAMPLES, confidence_level=LEVEL,
                             method="percentile", vectorized=True, rng=np.random.default_rng(SEED))
    return value, float(result.confidence_interval.low), float(result.confidence_interval.high)


def improvement_table(scores: dict[str, dict[str, np.ndarray]], references: list[str]) -> pd.DataFrame:
    """One row per (metric, arm, reference arm): the probability of improvement, its interval and whether it is
    resolved. scores: metric -> arm -> the arm's per-seed scores, oriented so that higher is better."""
    rows = []
    for metric, arms in scores.items():
        for reference in (r for r in references if len(arms.get(r, ())) > 0):
            for arm, x in arms.items():
                if arm == reference or len(x) == 0:
                    continue
                value, low, high = improvement(x, arms[reference])
                rows.append({"metric": metric, "arm": arm, "reference": reference, "probability": value,
                             "low": low, "high": high, "seeds": len(x), "reference_seeds": len(arms[reference]),
                             "resolved": bool(low > 0.5 or high < 0.5)})
    return pd.DataFrame(rows, columns=["metric", "arm", "reference", "probability", "low", "high", "seeds",
                                       "reference_seeds", "resolved"])


def rank_table(scores: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """Per metric, each arm's rank by its mean score (1: best) and a 95% bootstrap interval of that rank: every
    arm's seeds resampled together, RESAMPLES times, and the arms ranked in each resample (ties share a rank)."""
    rng, rows = np.random.default_rng(SEED), []
    for metric, arms in scores.items():
        arms = {arm: x for arm, x in arms.items() if len(x) > 0}
        if not arms:
            continue
        means = np.array([x.mean() for x in arms.values()])
        resampled = np.stack([rng.choice(x, (RESAMPLES, len(x))).mean(1) for x in arms.values()])
        ranks = stats.rankdata(-resampled, axis=0, method="min")
        low, high = np.percentile(ranks, [50 * (1 - LEVEL), 50 * (1 + LEVEL)], axis=1)
        for arm, rank, lo, hi in zip(arms, stats.rankdata(-means, method="min"), low, high):
            rows.append({"metric": metric, "arm": arm, "rank": int(rank), "rank_low": int(np.floor(lo)),
                         "rank_high": int(np.ceil(hi)), "arms": len(arms), "seeds": len(arms[arm])})
    return pd.DataFrame(rows, columns=["metric", "arm", "rank", "rank_low", "rank_high", "arms", "seeds"])
