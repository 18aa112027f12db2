"""Every toy runs, is deterministic for a seed, and reports the metrics the tables need."""
import numpy as np
import pytest

from moe_rpo import config as cfg
from moe_rpo import sections
from moe_rpo.experiments import EXPERIMENTS
from moe_rpo.io import write_json
from moe_rpo.tables import per_seed_table, summarize
from moe_rpo.toy import barrier, collapse, dilemma, routing
from moe_rpo.toy.settings import BarrierSettings

MODULES = {"routing": routing, "collapse": collapse, "dilemma": dilemma, "barrier": barrier}


def small_settings(experiment, seeds=(0, 1, 2)):
    config = cfg.validate({})
    settings = sections.experiment_settings(config, experiment)
    settings["steps"], settings["seeds"] = 40, list(seeds)
    if experiment == "collapse":
        settings["log_every"] = 10
    return settings


@pytest.mark.parametrize("experiment", MODULES)
def test_same_seeds_same_numbers(experiment):
    settings = small_settings(experiment)
    arrays_a, records_a = MODULES[experiment].run(settings)
    arrays_b, records_b = MODULES[experiment].run(settings)
    assert records_a == records_b
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key])
    by_seed = {seed: [r for r in records_a if r["seed"] == seed] for seed in settings["seeds"]}
    assert by_seed[0] != [{**r, "seed": 0} for r in by_seed[1]]  # other seeds, other numbers


@pytest.mark.parametrize("experiment", MODULES)
def test_records_feed_the_tables(experiment, tmp_path):
    settings = small_settings(experiment, seeds=(0, 1))
    _, records = MODULES[experiment].run(settings)
    write_json(tmp_path / "run.json", {"records": records})
    registered = EXPERIMENTS[experiment]
    summary = summarize(per_seed_table([tmp_path / "run.json"]), registered.group_keys, registered.metrics)
    assert set(registered.group_keys) <= set(summary.columns)
    assert (summary["seeds"] == 2).all()
    for metric in registered.metrics:
        assert summary[f"{metric}_median"].notna().all()


@pytest.mark.parametrize("experiment", MODULES)
def test_only_the_shown_seed_keeps_its_full_series(experiment):
    """The records hold metrics of every seed; the arrays hold the shown seed's series and summaries over seeds,
    so that they do not grow with the seeds."""
    few, many = (MODULES[experiment].run(small_settings(experiment, seeds))[0] for seeds in ((0, 1), range(6)))
    assert few.keys() == many.keys()
    assert {key.split("/")[0] for key in few if key.startswith("seed")} == {"seed0"}
    assert all(few[key].shape == many[key].shape for key in few)


def test_routing_trajectory_starts_at_the_initial_routing_and_has_every_step():
    settings = small_settings("routing")
    arrays, records = routing.run(settings)
    for method in settings["methods"]:
        assert arrays[f"seed0/{method['router']}_k{method['k']}"].shape == (settings["steps"] + 1, 2)
    assert [(r["method"], r["k"]) for r in records[::len(settings["seeds"])]] == [
        (m["router"], m["k"]) for m in settings["methods"]]
    assert len(records) == len(settings["methods"]) * len(settings["seeds"])


def test_barrier_loss_path_is_not_monotone_by_default():
    settings = BarrierSettings.of(small_settings("barrier"))
    t, loss = barrier.interpolation_loss(settings)
    assert barrier.barrier_height(settings) > 0.5
    assert loss[-1] < loss[0] < loss.max()


def test_dilemma_target_lies_outside_the_standard_reachable_set():
    settings = small_settings("dilemma")
    _, records = dilemma.run(settings)
    assert records[0]["optimum_distance"] < 1e-9 < records[0]["standard_reachable_distance"]


def test_the_final_distance_figure_is_the_same_file_every_time(tmp_path):
    """Its strip plot jitters the points at random: drawn twice, the PNG must still be byte-identical."""
    import pandas as pd

    from moe_rpo.figures.toy import routing_final_distance

    seeds = pd.DataFrame({"method": ["standard", "rpo"] * 4, "k": [1, 1, 2, 2] * 2,
                          "final_distance": [0.3, 0.01, 0.2, 0.02, 0.31, 0.015, 0.25, 0.03]})
    optima = pd.DataFrame({"k": [1, 2], "solution": ["optimum"] * 2, "distance": [0.1, 0.0]})
    drawn = []
    for run in ("a", "b"):
        png = routing_final_distance(seeds, optima, tmp_path / run)[0]
        drawn.append(png.read_bytes())
    assert drawn[0] == drawn[1]


def test_each_toys_section_is_exactly_its_typed_settings():
    """A key the schema adds to a toy, or one a section loses, fails here before a job does."""
    from dataclasses import fields

    from moe_rpo import job_kinds
    from moe_rpo.toy.settings import CollapseSettings, FixedExpertsSettings

    config = cfg.validate({})
    typed = {"routing": FixedExpertsSettings, "dilemma": FixedExpertsSettings, "collapse": CollapseSettings,
             "barrier": BarrierSettings}
    assert set(typed) == set(config["toy"])
    for experiment, cls in typed.items():
        settings = job_kinds.TOY_RUN.settings(config, {"experiment": experiment})
        assert {f.name for f in fields(cls)} == set(settings), experiment
        assert cls.of(settings).methods[0] == (settings["methods"][0]["router"], settings["methods"][0]["k"])
    benchmark = job_kinds.TOY_BENCHMARK_RUN.settings(config, {})
    assert {f.name for f in fields(FixedExpertsSettings)} == set(benchmark)
    with pytest.raises(ValueError, match=r"unknown BarrierSettings keys \['stepz'\]"):
        BarrierSettings.of({**job_kinds.TOY_RUN.settings(config, {"experiment": "barrier"}), "stepz": 1})
