# Claims (verdicts from the measured numbers) and the HTML report pages.


rule claims:
    """Evaluate every paper claim from the per-seed tables."""
    input:
        tables=expand("results/tables/toy_{experiment}_seeds.csv", experiment=TOY_EXPERIMENTS),
        lm=expand("results/tables/lm_{experiment}_seeds.csv", experiment=["recovery", *TRAINING_EXPERIMENTS]),
        code=command_code("claims"),
    output:
        "results/claims.json",
    params:
        thresholds=json.dumps(config["claims"], sort_keys=True),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    log:
        "results/logs/claims.log",
    benchmark:
        "results/benchmarks/claims.tsv"
    shell:
        "python -m moe_rpo claims --tables-dir results/tables --settings {params.thresholds:q} --out {output} > {log} 2>&1"


rule report:
    """Render the report pages (index with the claims checklist, one page per experiment)."""
    input:
        claims="results/claims.json",
        figures=[path for page in PAGES for path in figure_outputs(page)],
        tables=[f"results/tables/{stem}.csv" for page in PAGES for stem in page["tables"]],
        runs=[f"results/{job.record}.json" for job in ALL_JOBS],
        benchmarks=[f"results/benchmarks/{job.benchmark}.tsv" for job in ALL_JOBS],
        base="results/lm/base/model.json",
        base_benchmark="results/benchmarks/lm_base/base_model.tsv",
        corpora=CORPUS_META,
        templates=sorted(map(str, Path("paper").rglob("*.*"))),
        code=command_code("report"),
    output:
        REPORT_PAGES,
    params:
        config=json.dumps(config, sort_keys=True),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        CONDA_ENV
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    shell:
        "python -m moe_rpo report --results-dir results --out-dir results/report --templates paper/templates "
        "--settings {params.config:q} > {log} 2>&1"
