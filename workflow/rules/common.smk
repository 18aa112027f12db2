# Shared definitions (the Snakefile has validated the config): the experiment registry, the paths, and the
# input functions the rules use. Every path comes from moe_rpo/paths.py, every experiment from
# moe_rpo/experiments.py.
import json
import os
from pathlib import Path

from moe_rpo import paths
from moe_rpo.code_inputs import command_code, plugin_sources  # a rule's code inputs: its command's imports
from moe_rpo.routers import unused_router_modules
from moe_rpo.experiments import EXPERIMENTS, TOY_EXPERIMENTS, TRAINING_EXPERIMENTS, all_jobs
from moe_rpo.sections import (
    benchmark_toy_settings,
    experiment_settings,
    layer_sweep_sets,
    reading_run_settings,
    recovery_design_settings,
    recovery_layers_settings,
    recovery_run_settings,
    recovery_settings,
    training_run_settings,
)

# Jobs run `python -m moe_rpo` from this checkout's src/, so the rules also work in a conda env or on a
# cluster node where only the dependencies are installed.
SRC = Path(workflow.basedir) / "src"
shell.prefix(f'export PYTHONPATH="{SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')
CONDA_ENV = "../envs/moe-rpo.yaml"

CORPORA = sorted(config["corpora"])
CORPUS_DIR = paths.result(paths.CORPUS)
RECOVERY_SETTINGS = list(recovery_settings(config["recovery"]))
ALL_JOBS = all_jobs(config)

REPORT_PAGES = [paths.report_page("index")] + [paths.report_page(e.stem) for e in EXPERIMENTS.values()]


def configured_by():
    """What produced this run, as the index page says it: its config files, each merged over the ones before
    (relative to the checkout), and its --config values."""
    files = [os.path.relpath(path, workflow.basedir) for path in workflow.configfiles]
    files = sorted(dict.fromkeys(files), key=lambda path: path != "config/config.yaml")  # the defaults' file first
    overrides = [f"{key}={value}".replace("'", "") for key, value in workflow.config_settings.config.items()]
    return "snakemake with " + " + ".join(files) + (" and --config " + " ".join(overrides) if overrides else "")


def code_of(command, *extra, exclude=()):
    """The code inputs of a rule that runs `command` (moe_rpo.code_inputs.command_code), relative to the
    working directory, which `snakemake --directory` may move away from the checkout."""
    return [os.path.relpath(Path(workflow.basedir, path)) for path in command_code(command, *extra, exclude=exclude)]


def workflow_file(*parts):
    """A file of the checkout (templates, ...), relative to the working directory."""
    return os.path.relpath(Path(workflow.basedir, *parts))


def tensorboard_dir(job):
    """The params function of a training job's TensorBoard folder (paths.TENSORBOARD, named by the job's key)."""
    return lambda wildcards: paths.tensorboard(job["key"], **wildcards)


def job_files(jobs):
    """The files (records, and toys' arrays) that a list of jobs writes."""
    return [path for job in jobs for path in job.files()]


def records(jobs):
    return [paths.result(f"{job.record}.json") for job in jobs]


def settings_json(experiment):
    """A toy experiment's settings, passed to the command as JSON so that a change reruns only its jobs."""
    return json.dumps(experiment_settings(config, experiment), sort_keys=True)


def launcher(train):
    """How a training job starts, as shell words (each quoted in the command): one process, or
    `train.processes` data-parallel ones under torchrun."""
    if train["processes"] == 1:
        return ["python", "-m", "moe_rpo"]
    return ["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(train["processes"]),
            "-m", "moe_rpo"]


def reported(paths_, category):
    """Outputs marked for `snakemake --report` (PNG figures and CSV tables; the PDFs repeat the PNGs), under
    their experiment's page, captioned by the rule's `caption` param (the page's summary)."""
    return [report(path, caption="../report/caption.rst", category=category,
                   subcategory="figures" if path.endswith(".png") else "tables")
            if path.endswith((".png", ".csv")) else path for path in paths_]


def corpus_json(wildcards):
    """One corpus's spec as JSON (a change reruns only that corpus's jobs)."""
    return json.dumps(config["corpora"][wildcards.corpus], sort_keys=True)


def corpus_shards(wildcards):
    """Output prefixes of a corpus's shard jobs, in shard order."""
    count = config["corpora"][wildcards.corpus]["shards"]
    return [f"{CORPUS_DIR.format(corpus=wildcards.corpus)}/shards/{shard}" for shard in range(count)]


def corpus_files(name):
    """A prepared corpus's token files and metadata, as inputs."""
    return [f"{CORPUS_DIR.format(corpus=name)}/{file}" for file in ("train.bin", "val.bin", "meta.json")]


def get_training_corpus(wildcards):
    return corpus_files(config[wildcards.training]["corpus"])


def get_training_settings(wildcards):
    return json.dumps(training_run_settings(config, wildcards.training, wildcards.method), sort_keys=True)


def get_reading_settings(wildcards):
    return json.dumps(reading_run_settings(config, wildcards.reading, wildcards.method), sort_keys=True)


def get_training_launcher(wildcards):
    return launcher(config[wildcards.training]["train"])


def get_training_gpus(wildcards):
    return config[wildcards.training]["train"]["processes"]


def get_recovery_settings(wildcards):
    """A recovery job's settings: its one method (a change of another method's router reruns none of its jobs)."""
    return json.dumps(recovery_run_settings(config, wildcards.setting, wildcards.method), sort_keys=True)


def get_recovery_layers_settings(wildcards):
    """A layer-sweep job's settings: the recovery section with that set of MoE layers and one sweep method."""
    return json.dumps(recovery_layers_settings(config, wildcards.layers, wildcards.method), sort_keys=True)


def get_toy_code(wildcards):
    return code_of("toy", f"moe_rpo.toy.{wildcards.experiment}")  # the command imports it by name


def router_code(command, settings_of):
    """An input function: the code inputs of a job that builds only the routers of its settings (JSON from
    `settings_of(wildcards)`), without the built-in router modules those never import."""
    return lambda wildcards: code_of(command, exclude=unused_router_modules(
        json.loads(settings_of(wildcards))["routers"].values()))


def plugin_code(settings_of):
    """An input function: the source files of the plugin routers (routers: {method: plugin}) in the settings
    that `settings_of(wildcards)` gives a job as JSON, so that editing a plugin reruns the jobs that build it."""
    return lambda wildcards: plugin_sources(json.loads(settings_of(wildcards)))


def get_corpus_dir(wildcards, input):
    return os.path.dirname(input.corpus[0])


wildcard_constraints:
    corpus="|".join(CORPORA),
    shard=r"\d+",
    experiment="|".join(TOY_EXPERIMENTS),
    seed=r"\d+",
    setting="|".join(RECOVERY_SETTINGS),
    layers="|".join(layer_sweep_sets(config["recovery"])) or "(?!)",  # (?!): no sweep, matches nothing
    training="|".join(TRAINING_EXPERIMENTS),
    method=r"[A-Za-z0-9][A-Za-z0-9_-]*",  # a method slug (router_k1, dense): never a path
    reading="|".join(config["claims"]["readings"]) or "(?!)",  # (?!): no readings, matches nothing
