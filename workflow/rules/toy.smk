# The toy experiments: one job per experiment (every method and seed inside, the seeds side by side), and
# toy 1 for the router benchmark's (router, k) pairs. Their tables and figures: workflow/rules/experiments.smk.


rule toy_run:
    """Train every method of one toy experiment for all its seeds."""
    input:
        code=get_toy_code,
        plugins=plugin_code(lambda wc: settings_json(wc.experiment)),
    output:
        record=paths.record(paths.TOY_RUN),
        arrays=paths.record(paths.TOY_RUN, ".npz"),
    params:
        toy=lambda wc: wc.experiment,
        settings=lambda wc: settings_json(wc.experiment),
        prefix=lambda wc, output: output.record.removesuffix(".json"),
    threads: 1
    conda:
        CONDA_ENV
    log:
        paths.log(paths.TOY_RUN["key"]),
    benchmark:
        paths.benchmark(paths.TOY_RUN["key"])
    shell:
        "python -m moe_rpo toy {params.toy:q} --settings {params.settings:q} "
        "--out {params.prefix:q} > {log:q} 2>&1"


use rule toy_run as toy_benchmark_run with:
    input:
        code=code_of("toy", "moe_rpo.toy.routing"),
        plugins=plugin_sources(benchmark_toy_settings(config)),
    output:
        record=paths.record(paths.TOY_RUN, experiment="benchmark"),
        arrays=paths.record(paths.TOY_RUN, ".npz", experiment="benchmark"),
    params:
        toy="routing",
        settings=json.dumps(benchmark_toy_settings(config), sort_keys=True),  # exactly the benchmark's pairs
        prefix=lambda wc, output: output.record.removesuffix(".json"),
    log:
        paths.log(paths.TOY_RUN["key"], experiment="benchmark"),
    benchmark:
        paths.benchmark(paths.TOY_RUN["key"], experiment="benchmark")
