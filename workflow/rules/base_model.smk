# The dense base model: pretrained here on a corpus, or GPT-2 loaded from Hugging Face.


rule base_model:
    """Pretrain the dense base model on its corpus (or load GPT-2); record its validation loss."""
    input:
        corpus=corpus_files(config["base_model"]["corpus"]),
        # a dense GPT has no MoE layer: the routing code it imports (routers, dispatch, metrics) never runs
        code=code_of(job_kinds.BASE_MODEL.command, exclude=("moe_rpo.routers", "moe_rpo.models.moe", "moe_rpo.models.distractors",
                                           "moe_rpo.routing_metrics")),
    output:
        model=paths.record(job_kinds.BASE_MODEL.files, ".pt"),
        record=paths.record(job_kinds.BASE_MODEL.files),
    params:
        settings=job_settings(job_kinds.BASE_MODEL),
        corpus_dir=get_corpus_dir,
        launch=job_launch(job_kinds.BASE_MODEL),
        tensorboard=tensorboard_dir(job_kinds.BASE_MODEL),
    # one thread and the top priority (its corpus jobs have it too): on 2 cores a 2-thread job waits until
    # both are free at once, which every 1-thread toy job started in between delays, and every recovery job
    # waits for this one
    threads: 1
    priority: 20
    resources:
        gpu=job_gpus(job_kinds.BASE_MODEL),
    conda:
        CONDA_ENV
    log:
        paths.log(job_kinds.BASE_MODEL.files["key"]),
    benchmark:
        paths.benchmark(job_kinds.BASE_MODEL.files["key"])
    shell:
        "{params.launch:q} base-model --settings {params.settings:q} --corpus-dir {params.corpus_dir:q} "
        "--out {output.model:q} --threads {threads:q} --tensorboard {params.tensorboard:q} > {log:q} 2>&1"
