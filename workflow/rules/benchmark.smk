# The router benchmark's own recovery jobs (its toy-1 jobs are in toy.smk; its Shakespeare runs are the
# Shakespeare MoE experiment's). Its table and figure: workflow/rules/experiments.smk.


use rule recovery_run as benchmark_recovery_run with:
    output:
        paths.record(paths.RECOVERY_RUN, recovery="benchmark_recovery"),
    params:
        settings=json.dumps(recovery_run_settings(config, benchmark=True), sort_keys=True),
        corpus_dir=get_corpus_dir,
        launch=launcher(config["benchmark"]["recovery"]["train"]),
    resources:
        gpu=config["benchmark"]["recovery"]["train"]["processes"],
    log:
        paths.log(paths.RECOVERY_RUN["key"], recovery="benchmark_recovery"),
    benchmark:
        paths.benchmark(paths.RECOVERY_RUN["key"], recovery="benchmark_recovery")
