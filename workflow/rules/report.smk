# Claims (verdicts from the measured numbers) and the HTML report pages.

CLAIM_TABLES = [paths.table(table) for e in EXPERIMENTS.values() if e.claims
                for table in (e.seeds_table, e.robustness_table) if table]


rule claims:
    """Evaluate every paper claim from the per-seed tables."""
    input:
        tables=CLAIM_TABLES,
        code=code_of("claims"),
    output:
        paths.result(paths.CLAIMS),
    params:
        thresholds=json.dumps(config["claims"], sort_keys=True),
        tables_dir=lambda wc, input: os.path.dirname(input.tables[0]),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    conda:
        CONDA_ENV
    log:
        paths.log("claims"),
    benchmark:
        paths.benchmark("claims")
    shell:
        "python -m moe_rpo claims --tables-dir {params.tables_dir:q} --settings {params.thresholds:q} --out {output:q} "
        "> {log:q} 2>&1"


rule report:
    """Render the report pages (index with the claims checklist, one page per experiment)."""
    input:
        claims=paths.result(paths.CLAIMS),
        figures=[getattr(rules, f"figures_{e.stem}").output for e in EXPERIMENTS.values()],
        tables=[paths.table(name) for e in EXPERIMENTS.values() for name in e.shown],
        runs=records(ALL_JOBS),
        benchmarks=[paths.benchmark(job.key) for job in ALL_JOBS],
        base=rules.base_model.output.record,
        base_benchmark=paths.benchmark(paths.BASE_MODEL["key"]),
        corpora=[corpus_files(corpus)[2] for corpus in CORPORA],
        base_template=workflow_file("paper", "templates", "base.html.j2"),
        templates=sorted(workflow_file(path) for path in Path(workflow.basedir, "paper").rglob("*.*")),
        code=code_of("report"),
    output:
        REPORT_PAGES,
    params:
        config=json.dumps(config, sort_keys=True),
        results_dir=lambda wc, input: os.path.dirname(input.claims),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
        templates=lambda wc, input: os.path.dirname(input.base_template),
        configured_by=configured_by(),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    conda:
        CONDA_ENV
    log:
        paths.log("report"),
    benchmark:
        paths.benchmark("report")
    shell:
        "python -m moe_rpo report --results-dir {params.results_dir:q} --out-dir {params.out_dir:q} "
        "--templates {params.templates:q} --settings {params.config:q} --configured-by {params.configured_by:q} "
        "> {log:q} 2>&1"
