"""Exact optima of the fixed-expert toy: the best k-subset with free weights (least squares), and the
best point that standard routing can reach, where the weights are the softmax probabilities."""
from __future__ import annotations

import itertools

import numpy as np


def best_subset_fit(experts: np.ndarray, target: np.ndarray, k: int) -> dict:
    """min over k-subsets S and free weights w of ||sum_{n in S} w_n e_n - target||, by enumeration."""
    best = None
    for subset in itertools.combinations(range(len(experts)), k):
        basis = experts[list(subset)].T
        weights, *_ = np.linalg.lstsq(basis, target, rcond=None)
        distance = float(np.linalg.norm(basis @ weights - target))
        if best is None or distance < best["distance"] - 1e-12:
            best = {"subset": list(subset), "weights": weights.tolist(), "distance": distance}
    return best


def standard_weight_grid(num_experts: int, k: int, resolution: int = 400) -> np.ndarray:
    """All weight vectors [M, k] (up to grid resolution) that softmax top-k routing with raw
    probabilities as weights can produce: w_i >= 0, sum(w) <= 1, and the remaining probability
    mass 1 - sum(w) must fit on the E - k unselected experts, none above min(w) (top-k property)."""
    axis = np.linspace(0.0, 1.0, resolution + 1)
    grid = np.array(list(itertools.product(axis, repeat=k)))
    total, smallest = grid.sum(1), grid.min(1)
    feasible = (total <= 1 + 1e-9) & (1 - total <= (num_experts - k) * smallest + 1e-9)
    return grid[feasible]


def best_standard_reachable(experts: np.ndarray, target: np.ndarray, k: int, resolution: int = 400) -> dict:
    """Closest point to the target reachable with weights = softmax probabilities (grid search)."""
    grid = standard_weight_grid(len(experts), k, resolution)
    best = None
    for subset in itertools.combinations(range(len(experts)), k):
        points = grid @ experts[list(subset)]
        distances = np.linalg.norm(points - target, axis=1)
        i = int(distances.argmin())
        if best is None or distances[i] < best["distance"] - 1e-12:
            best = {"subset": list(subset), "weights": grid[i].tolist(), "distance": float(distances[i])}
    return best
