# GPTs trained from scratch (Shakespeare MoE, pretraining): one job per method and seed, and per reading of
# claims.readings, method and seed. Their tables and
# figures, and those of the routerless comparison that reads the Shakespeare runs: experiments.smk.


rule train_run:
    """One method of a from-scratch training experiment (shakespeare_moe, pretraining) for one seed."""
    input:
        corpus=get_training_corpus,
        code=router_code("train", get_training_settings),
        plugins=plugin_code(get_training_settings),
    output:
        paths.record(paths.TRAIN_RUN),
    params:
        settings=get_training_settings,
        corpus_dir=get_corpus_dir,
        launch=get_training_launcher,
        tensorboard=tensorboard_dir(paths.TRAIN_RUN),
    threads: 1
    resources:
        gpu=get_training_gpus,
    conda:
        CONDA_ENV
    log:
        paths.log(paths.TRAIN_RUN["key"]),
    benchmark:
        paths.benchmark(paths.TRAIN_RUN["key"])
    shell:
        "{params.launch:q} train {wildcards.training:q} {wildcards.method:q} --seed {wildcards.seed:q} "
        "--settings {params.settings:q} --corpus-dir {params.corpus_dir:q} --out {output:q} --threads {threads:q} "
        "--tensorboard {params.tensorboard:q} > {log:q} 2>&1"


use rule train_run as reading_run with:
    input:
        corpus=get_training_corpus,
        code=router_code("train", get_reading_settings),
        plugins=plugin_code(get_reading_settings),
    output:
        paths.record(paths.READING_RUN),
    params:
        settings=get_reading_settings,
        corpus_dir=get_corpus_dir,
        launch=get_training_launcher,
        tensorboard=tensorboard_dir(paths.READING_RUN),
    log:
        paths.log(paths.READING_RUN["key"]),
    benchmark:
        paths.benchmark(paths.READING_RUN["key"])
