# The router benchmark: its own recovery jobs (and toy-1 jobs, in toy.smk) and the Shakespeare runs, one
# table and one heatmap; the routerless figure is drawn by the same rule.


use rule recovery_run as benchmark_recovery_run with:
    output:
        "results/lm/benchmark_recovery/{setting}/seed{seed}.json",
    params:
        settings=json.dumps(recovery_run_settings(config, benchmark=True), sort_keys=True),
        corpus_dir=lambda wc, input: os.path.dirname(input.corpus[0]),
        launch=launcher(config["benchmark"]["recovery"]["train"]),
    resources:
        gpu=config["benchmark"]["recovery"]["train"]["processes"],
        mem_mb=16000,
        runtime=480,
    log:
        "results/logs/lm_benchmark_recovery/{setting}/seed{seed}.log",
    benchmark:
        "results/benchmarks/lm_benchmark_recovery/{setting}/seed{seed}.tsv"


rule tables_lm_benchmark:
    """The router benchmark: toy 1, the benchmark's recovery jobs and the Shakespeare runs, one row per router."""
    input:
        runs=records(config, "benchmark"),
        code=command_code("tables"),
    output:
        reported(["results/tables/lm_benchmark.csv", "results/tables/lm_benchmark_medians.csv"], "lm_benchmark"),
    params:
        caption=page_summary("lm_benchmark"),
        section=json.dumps(config["benchmark"], sort_keys=True),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_benchmark/tables.log",
    benchmark:
        "results/benchmarks/lm_benchmark/tables.tsv"
    shell:
        "python -m moe_rpo tables benchmark --runs {input.runs} --settings {params.section:q} "
        "--out-dir results/tables > {log} 2>&1"


rule figures_lm_derived:
    """The routerless scatter plots and the benchmark heatmap, from their tables."""
    input:
        tables=lambda wc: ("results/tables/lm_routerless_seeds.csv" if wc.derived == "routerless"
                           else "results/tables/lm_benchmark_medians.csv"),
        code=command_code("figures"),
    output:
        reported(["results/figures/lm_{derived}.png", "results/figures/lm_{derived}.pdf"], "lm_{derived}"),
    params:
        caption=lambda wc: page_summary(f"lm_{wc.derived}"),
    wildcard_constraints:
        derived="routerless|benchmark",
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_{derived}/figures.log",
    benchmark:
        "results/benchmarks/lm_{derived}/figures.tsv"
    shell:
        "python -m moe_rpo figures {wildcards.derived} --runs {input.tables} --tables-dir results/tables "
        "--out-dir results/figures > {log} 2>&1"
