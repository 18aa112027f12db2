"""The jobs of every experiment and where their records live: one list that the Snakemake rules (inputs)
and the report (run tables) both read, so the two cannot disagree."""
from __future__ import annotations

from typing import NamedTuple

from moe_rpo.config import TOY_EXPERIMENTS, TRAINING_EXPERIMENTS, method_name, recovery_settings


class Job(NamedTuple):
    label: str
    record: str     # run record, relative to the results directory, without ".json"
    benchmark: str  # Snakemake benchmark file, relative to results/benchmarks, without ".tsv"


def toy_jobs(config: dict, experiment: str) -> list[Job]:
    """One job per seed of a toy experiment, or of the benchmark's toy-1 runs ("benchmark")."""
    seeds = config["benchmark"]["toy"]["seeds"] if experiment == "benchmark" else config["seeds"]
    return [Job(f"{'toy ' if experiment == 'benchmark' else ''}seed {seed}", f"toy/{experiment}/seed{seed}",
                f"toy_{experiment}/seed{seed}") for seed in seeds]


def recovery_jobs(config: dict, benchmark: bool = False) -> list[Job]:
    """The recovery experiment's jobs, or the benchmark's own recovery jobs."""
    if benchmark:
        name, settings, seeds = ("benchmark_recovery", config["benchmark"]["recovery"]["settings"],
                                 config["benchmark"]["recovery"]["seeds"])
    else:
        name, settings, seeds = "recovery", list(recovery_settings(config["recovery"])), config["recovery"]["seeds"]
    return [Job(f"{'recovery ' if benchmark else ''}{setting} seed {seed}", f"lm/{name}/{setting}/seed{seed}",
                f"lm_{name}/{setting}/seed{seed}") for setting in settings for seed in seeds]


def training_jobs(config: dict, experiment: str, methods: list[dict] | None = None) -> list[Job]:
    """One job per method and seed of a from-scratch experiment (`methods`: a subset of its methods)."""
    section = config[experiment]
    names = [method_name(m) for m in (section["methods"] if methods is None else methods)]
    return [Job(f"{name} seed {seed}", f"lm/{experiment}/{name}/seed{seed}", f"lm_{experiment}/{name}/seed{seed}")
            for name in names for seed in section["seeds"]]


def benchmark_shakespeare_methods(config: dict) -> list[dict]:
    """The benchmark's methods that the shakespeare_moe experiment runs (the others show 'not run')."""
    runs = {method_name(m) for m in config["shakespeare_moe"]["methods"]}
    return [m for m in config["benchmark"]["methods"] if method_name(m) in runs]


def experiment_jobs(config: dict, experiment: str) -> list[Job]:
    """Every job whose record an experiment's tables, figures and report page read."""
    if experiment in TOY_EXPERIMENTS:
        return toy_jobs(config, experiment)
    if experiment == "recovery":
        return recovery_jobs(config)
    if experiment in TRAINING_EXPERIMENTS:
        return training_jobs(config, experiment)
    if experiment == "routerless":
        routerless = config["routerless"]
        return training_jobs(config, "shakespeare_moe", routerless["fixed"] + routerless["learned"])
    if experiment == "benchmark":
        return (toy_jobs(config, "benchmark") + recovery_jobs(config, benchmark=True)
                + training_jobs(config, "shakespeare_moe", benchmark_shakespeare_methods(config)))
    raise ValueError(f"unknown experiment {experiment!r}")


def records(config: dict, experiment: str, results_dir: str = "results") -> list[str]:
    """The run-record paths of an experiment's jobs."""
    return [f"{results_dir}/{job.record}.json" for job in experiment_jobs(config, experiment)]
