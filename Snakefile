# Replication pipeline for "Peculiarities of Mixture-of-Expert Optimization" (RPO).
# `snakemake --cores all` regenerates every figure, table, claims.json and the report pages.
# The default profile (profiles/default) is picked up automatically.

import os
import sys
from pathlib import Path

from snakemake.utils import min_version

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # this checkout's package, the one its jobs run
from moe_rpo.cluster import placeholder_message, unset_placeholders
from moe_rpo.config import typed_command_line_values, validate
from moe_rpo.io import set_aside_unreadable
from moe_rpo.values import ConfigError

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")  # also from a --directory elsewhere


# The package's validator (the one the commands use): defaults, the schema and the cross-checks, with one
# short message naming the key. `--config` values inside lists and mappings are retyped first.
try:
    validate(typed_command_line_values(config, workflow.config_settings.config))
except ConfigError as error:
    raise WorkflowError(str(error)) from None

placeholders = unset_placeholders(workflow.resource_settings)  # profiles/slurm as shipped: refused before any job
if placeholders:
    raise WorkflowError(placeholder_message(placeholders))


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/base_model.smk"
include: "workflow/rules/recovery.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/report.smk"


# Every product docs/experiments.md lists, so that deleting any of them makes the next run remake it.
rule all:
    input:
        rules.report.output,
        rules.claims.output,
        [corpus_files(corpus) for corpus in CORPORA],
        rules.base_model.output,
        job_files(ALL_JOBS),
        [getattr(rules, f"{step}_{e.stem}").output for e in EXPERIMENTS.values() for step in ("tables", "figures")],
    default_target: True


# A finished output that cannot be read back (a truncated record or model) is set aside, so this run
# remakes it instead of every later job failing on it.
if workflow.is_main_process:
    for message in set_aside_unreadable(rules.all.input):
        logger.warning(message)
