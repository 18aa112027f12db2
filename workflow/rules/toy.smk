# The toy experiments: one job per experiment (every method and seed inside, the seeds side by side), and
# toy 1 for the router benchmark's (router, k) pairs. Their tables and figures: workflow/rules/experiments.smk.


rule toy_run:
    """Train every method of one toy experiment for all its seeds."""
    input:
        code=get_toy_code,
        plugins=plugin_code(job_kinds.TOY_RUN),
    output:
        record=paths.record(job_kinds.TOY_RUN.files),
        arrays=paths.record(job_kinds.TOY_RUN.files, ".npz"),
    params:
        toy=lambda wc: wc.experiment,
        settings=job_settings(job_kinds.TOY_RUN),
        prefix=lambda wc, output: output.record.removesuffix(".json"),
    threads: 1
    conda:
        CONDA_ENV
    log:
        paths.log(job_kinds.TOY_RUN.files["key"]),
    benchmark:
        paths.benchmark(job_kinds.TOY_RUN.files["key"])
    shell:
        "python -m moe_rpo toy {params.toy:q} --settings {params.settings:q} "
        "--out {params.prefix:q} > {log:q} 2>&1"


use rule toy_run as toy_benchmark_run with:
    input:
        code=code_of(job_kinds.TOY_BENCHMARK_RUN.command, "moe_rpo.toy.routing"),
        plugins=plugin_code(job_kinds.TOY_BENCHMARK_RUN),
    output:
        record=paths.record(job_kinds.TOY_BENCHMARK_RUN.files, experiment="benchmark"),
        arrays=paths.record(job_kinds.TOY_BENCHMARK_RUN.files, ".npz", experiment="benchmark"),
    params:
        toy="routing",
        settings=job_settings(job_kinds.TOY_BENCHMARK_RUN),  # exactly the benchmark's pairs
        prefix=lambda wc, output: output.record.removesuffix(".json"),
    log:
        paths.log(job_kinds.TOY_BENCHMARK_RUN.files["key"], experiment="benchmark"),
    benchmark:
        paths.benchmark(job_kinds.TOY_BENCHMARK_RUN.files["key"], experiment="benchmark")
