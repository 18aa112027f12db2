# GPTs trained from scratch (Shakespeare MoE, pretraining): one job per method and seed, and per reading of
# claims.readings, method and seed. Their tables and
# figures, and those of the routerless comparison that reads the Shakespeare runs: experiments.smk.


rule train_run:
    """One method of a from-scratch training experiment (shakespeare_moe, pretraining) for one seed."""
    input:
        corpus=get_training_corpus,
        code=router_code(job_kinds.TRAIN_RUN),
        plugins=plugin_code(job_kinds.TRAIN_RUN),
    output:
        paths.record(job_kinds.TRAIN_RUN.files),
    params:
        settings=job_settings(job_kinds.TRAIN_RUN),
        corpus_dir=get_corpus_dir,
        launch=job_launch(job_kinds.TRAIN_RUN),
        tensorboard=tensorboard_dir(job_kinds.TRAIN_RUN),
    threads: 1
    resources:
        gpu=job_gpus(job_kinds.TRAIN_RUN),
    conda:
        CONDA_ENV
    log:
        paths.log(job_kinds.TRAIN_RUN.files["key"]),
    benchmark:
        paths.benchmark(job_kinds.TRAIN_RUN.files["key"])
    shell:
        "{params.launch:q} train {wildcards.training:q} {wildcards.method:q} --seed {wildcards.seed:q} "
        "--settings {params.settings:q} --corpus-dir {params.corpus_dir:q} --out {output:q} --threads {threads:q} "
        "--tensorboard {params.tensorboard:q} > {log:q} 2>&1"


use rule train_run as reading_run with:
    input:
        corpus=get_training_corpus,
        code=router_code(job_kinds.READING_RUN),
        plugins=plugin_code(job_kinds.READING_RUN),
    output:
        paths.record(job_kinds.READING_RUN.files),
    params:
        settings=job_settings(job_kinds.READING_RUN),
        corpus_dir=get_corpus_dir,
        launch=job_launch(job_kinds.READING_RUN),
        tensorboard=tensorboard_dir(job_kinds.READING_RUN),
    resources:
        gpu=job_gpus(job_kinds.READING_RUN),
    log:
        paths.log(job_kinds.READING_RUN.files["key"]),
    benchmark:
        paths.benchmark(job_kinds.READING_RUN.files["key"])
