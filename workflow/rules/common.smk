# Shared definitions (the Snakefile has validated the config): the experiment registry, the paths, and the
# input functions the rules use. Every path comes from moe_rpo/paths.py, every experiment from
# moe_rpo/experiments.py, every job's settings, launch and GPUs from its kind in moe_rpo/job_kinds.py.
import functools
import json
import os
from pathlib import Path

from moe_rpo import job_kinds, paths
from moe_rpo.code_inputs import command_code, plugin_sources  # a rule's code inputs: its command's imports
from moe_rpo.routers import unused_router_modules
from moe_rpo.experiments import EXPERIMENTS, TOY_EXPERIMENTS, TRAINING_EXPERIMENTS, all_jobs
from moe_rpo.sections import layer_sweep_sets, recovery_settings

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


def tensorboard_dir(kind):
    """The params function of a training job's TensorBoard folder (paths.TENSORBOARD, named by the job's key)."""
    return lambda wildcards: paths.tensorboard(kind.files["key"], **wildcards)


def job_files(jobs):
    """The files (records, and toys' arrays) that a list of jobs writes."""
    return [path for job in jobs for path in job.files()]


def records(jobs):
    return [paths.result(f"{job.record}.json") for job in jobs]


@functools.cache
def _job_settings(rule, wildcards):
    """A job's settings (its kind's slice of the config), made once per job: its params, resources and code inputs
    all read them. `wildcards`: (name, value) pairs."""
    return job_kinds.JOB_KINDS[rule].settings(config, dict(wildcards))


def settings_of(kind, wildcards):
    return _job_settings(kind.rule, tuple(wildcards.items()))


def job_settings(kind):
    """The params function of a job's settings, as JSON (a change reruns only the jobs whose slice it is in)."""
    return lambda wildcards: json.dumps(settings_of(kind, wildcards), sort_keys=True)


def job_launch(kind):
    """The params function of how a job starts, as shell words (JobKind.launcher; each quoted in the command)."""
    return lambda wildcards: kind.launcher(settings_of(kind, wildcards))


def job_gpus(kind):
    """The resources function of the GPUs a job asks for (JobKind.gpus)."""
    return lambda wildcards: kind.gpus(settings_of(kind, wildcards))


def reported(paths_, category):
    """Outputs marked for `snakemake --report` (PNG figures and CSV tables; the PDFs repeat the PNGs), under
    their experiment's page, captioned by the rule's `caption` param (the page's summary)."""
    return [report(path, caption="../report/caption.rst", category=category,
                   subcategory="figures" if path.endswith(".png") else "tables")
            if path.endswith((".png", ".csv")) else path for path in paths_]


def corpus_shards(wildcards):
    """Output prefixes of a corpus's shard jobs, in shard order."""
    count = config["corpora"][wildcards.corpus]["shards"]
    return [f"{CORPUS_DIR.format(corpus=wildcards.corpus)}/shards/{shard}" for shard in range(count)]


def corpus_files(name):
    """A prepared corpus's token files and metadata, as inputs."""
    return [f"{CORPUS_DIR.format(corpus=name)}/{file}" for file in ("train.bin", "val.bin", "meta.json")]


def get_training_corpus(wildcards):
    return corpus_files(config[wildcards.training]["corpus"])


def get_toy_code(wildcards):
    return code_of(job_kinds.TOY_RUN.command, f"moe_rpo.toy.{wildcards.experiment}")  # the command imports it by name


def router_code(kind):
    """An input function: the code inputs of a job that builds only the routers of its settings (and those its kind
    builds besides), without the built-in router modules those never import."""
    return lambda wildcards: code_of(kind.command, exclude=unused_router_modules(
        kind.routers(settings_of(kind, wildcards))))


def plugin_code(kind):
    """An input function: the source files of the plugin routers (routers: {method: plugin}) in a job's settings, so
    that editing a plugin reruns the jobs that build it."""
    return lambda wildcards: plugin_sources(settings_of(kind, wildcards))


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
