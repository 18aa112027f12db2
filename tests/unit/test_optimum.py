"""Exact optima of the fixed-expert toy."""
import numpy as np

from moe_rpo.toy.optimum import (
    best_standard_reachable,
    best_subset_fit,
    standard_weight_grid,
)


def test_best_subset_fit_finds_exact_solutions():
    experts = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    fit = best_subset_fit(experts, np.array([0.5, 0.5]), 1)
    assert fit["subset"] == [2] and np.isclose(fit["weights"][0], 0.5) and np.isclose(fit["distance"], 0)
    fit = best_subset_fit(experts, np.array([2.0, -1.0]), 2)
    assert np.isclose(fit["distance"], 0)
    one = best_subset_fit(experts, np.array([2.0, -1.0]), 1)
    assert one["distance"] > 0.5


def test_standard_grid_respects_the_softmax_constraints():
    grid = standard_weight_grid(num_experts=4, k=2, resolution=50)
    assert (grid >= 0).all() and (grid.sum(1) <= 1 + 1e-9).all()
    assert ((1 - grid.sum(1)) <= 2 * grid.min(1) + 1e-9).all()
    assert not any(np.allclose(row, [0.1, 0.1]) for row in grid), "0.8 left for 2 experts, each above 0.1"
    assert any(np.allclose(row, [0.3, 0.3]) for row in grid)


def test_standard_cannot_exceed_weight_one():
    experts = np.array([[1.0, 0.0], [0.0, 1.0]])
    reach = best_standard_reachable(experts, np.array([2.0, 0.0]), k=1)
    assert np.isclose(reach["distance"], 1.0, atol=1e-2)
    assert np.isclose(best_subset_fit(experts, np.array([2.0, 0.0]), 1)["distance"], 0)
