# Shared definitions: the lists of outputs (the Snakefile has validated the config).
import json
import os
from pathlib import Path

from moe_rpo.config import (
    SHAKESPEARE_PAPER_METHODS,
    TOY_EXPERIMENTS,
    TRAINING_EXPERIMENTS,
    arm_router,
    benchmark_toy_settings,
    experiment_settings,
    method_name,
    recovery_run_settings,
    recovery_settings,
    training_run_settings,
)
from moe_rpo.code_inputs import command_code  # a rule's code inputs: its command's imports
from moe_rpo.jobs import experiment_jobs, records
from moe_rpo.report.pages import PAGES

# Jobs run `python -m moe_rpo` from this checkout's src/, so the rules also work in a conda env or on a
# cluster node where only the dependencies are installed.
SRC = Path(workflow.basedir) / "src"
shell.prefix(f'export PYTHONPATH="{SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')
CONDA_ENV = "../envs/moe-rpo.yaml"

SEEDS = config["seeds"]
CORPORA = sorted(config["corpora"])
CORPUS_META = expand("results/data/{corpus}/meta.json", corpus=CORPORA)
RECOVERY_SETTINGS = list(recovery_settings(config["recovery"]))
RECOVERY_SEEDS = config["recovery"]["seeds"]
RECOVERY_RUNS = expand("results/lm/recovery/{setting}/seed{seed}.json", setting=RECOVERY_SETTINGS, seed=RECOVERY_SEEDS)
PAGE_BY_SLUG = {page["slug"]: page for page in PAGES}
TOY_PAGES = [page for page in PAGES if page["experiment"] in TOY_EXPERIMENTS]
ALL_JOBS = sorted({job for page in PAGES for job in experiment_jobs(config, page["experiment"])})
REPORT_PAGES = ["results/report/index.html"] + [f"results/report/{page['slug']}.html" for page in PAGES]


def settings_json(experiment):
    """The experiment's settings, passed to the command as JSON so that a change reruns only its jobs."""
    return json.dumps(experiment_settings(config, experiment), sort_keys=True)


def launcher(train):
    """How a training job starts: one process, or `train.processes` data-parallel ones under torchrun."""
    if train["processes"] == 1:
        return "python -m moe_rpo"
    return f"python -m torch.distributed.run --standalone --nproc_per_node {train['processes']} -m moe_rpo"


def figure_outputs(page):
    return [f"results/figures/{stem}.{ext}" for stem in page["figures"] for ext in ("png", "pdf")]


def reported(paths, category):
    """Outputs marked for `snakemake --report` (PNG figures and CSV tables; the PDFs repeat the PNGs), under
    their page's slug, captioned by the rule's `caption` param (the page's summary)."""
    return [report(path, caption="../report/caption.rst", category=category,
                   subcategory="figures" if path.endswith(".png") else "tables")
            if path.endswith((".png", ".csv")) else path for path in paths]


def page_summary(slug):
    return PAGE_BY_SLUG[slug]["summary"]


def corpus_json(wildcards):
    """One corpus's spec as JSON (a change reruns only that corpus's jobs)."""
    return json.dumps(config["corpora"][wildcards.corpus], sort_keys=True)


def corpus_shards(wildcards):
    """Output prefixes of a corpus's shard jobs, in shard order."""
    count = config["corpora"][wildcards.corpus]["shards"]
    return [f"results/data/{wildcards.corpus}/shards/{shard}" for shard in range(count)]


def corpus_files(name):
    """A prepared corpus's token files and metadata, as inputs."""
    return [f"results/data/{name}/{file}" for file in ("train.bin", "val.bin", "meta.json")]


wildcard_constraints:
    corpus="|".join(CORPORA),
    shard=r"\d+",
    experiment="|".join(TOY_EXPERIMENTS),
    seed=r"\d+",
    setting="|".join(RECOVERY_SETTINGS),
    training="|".join(TRAINING_EXPERIMENTS),
