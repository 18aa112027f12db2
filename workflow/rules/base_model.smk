# The dense base model: pretrained here on a corpus, or GPT-2 loaded from Hugging Face.


rule base_model:
    """Pretrain the dense base model on its corpus (or load GPT-2); record its validation loss."""
    input:
        corpus=corpus_files(config["base_model"]["corpus"]),
        # a dense GPT has no MoE layer: the routing code it imports (routers, dispatch, metrics) never runs
        code=code_of("base-model", exclude=("moe_rpo.routers", "moe_rpo.models.moe", "moe_rpo.models.distractors",
                                           "moe_rpo.routing_metrics")),
    output:
        model=paths.record(paths.BASE_MODEL, ".pt"),
        record=paths.record(paths.BASE_MODEL),
    params:
        settings=json.dumps(config["base_model"], sort_keys=True),
        corpus_dir=get_corpus_dir,
        launch=launcher(config["base_model"]["train"]),
        tensorboard=tensorboard_dir(paths.BASE_MODEL),
    # one thread and the top priority (its corpus jobs have it too): on 2 cores a 2-thread job waits until
    # both are free at once, which every 1-thread toy job started in between delays, and every recovery job
    # waits for this one
    threads: 1
    priority: 20
    resources:
        gpu=config["base_model"]["train"]["processes"],
    conda:
        CONDA_ENV
    log:
        paths.log(paths.BASE_MODEL["key"]),
    benchmark:
        paths.benchmark(paths.BASE_MODEL["key"])
    shell:
        "{params.launch:q} base-model --settings {params.settings:q} --corpus-dir {params.corpus_dir:q} "
        "--out {output.model:q} --threads {threads:q} --tensorboard {params.tensorboard:q} > {log:q} 2>&1"
