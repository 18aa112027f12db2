# Replication pipeline for "Peculiarities of Mixture-of-Expert Optimization" (RPO).
# `snakemake --cores all` regenerates every figure, table, claims.json and the report pages.
# The default profile (profiles/default) is picked up automatically.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/lm.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        REPORT_PAGES,
        "results/claims.json",
        CORPUS_META,
    default_target: True
