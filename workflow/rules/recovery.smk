# GPT-2 optimal routing recovery: one job per setting (diff / sim<scale>), method and seed, each with the same
# distractors, batches and evaluation windows (drawn from the seed); in the router benchmark's settings also the
# benchmark's other methods, whose column reads these runs. Its tables and figures: workflow/rules/experiments.smk.


rule recovery_run:
    """One router method of the recovery experiment (or in the benchmark's settings the benchmark's) for one setting
    (diff / sim<scale>) and one seed."""
    input:
        base=rules.base_model.output.model,
        corpus=corpus_files(config["recovery"]["corpus"]),
        code=router_code("recovery", get_recovery_settings),
        plugins=plugin_code(get_recovery_settings),
    output:
        paths.record(paths.RECOVERY_RUN),
    params:
        settings=get_recovery_settings,
        corpus_dir=get_corpus_dir,
        launch=launcher(config["recovery"]["train"]),
        tensorboard=tensorboard_dir(paths.RECOVERY_RUN),
    threads: 1
    resources:
        gpu=config["recovery"]["train"]["processes"],
    conda:
        CONDA_ENV
    log:
        paths.log(paths.RECOVERY_RUN["key"]),
    benchmark:
        paths.benchmark(paths.RECOVERY_RUN["key"])
    shell:
        "{params.launch:q} recovery {wildcards.setting:q} {wildcards.method:q} --seed {wildcards.seed:q} "
        "--settings {params.settings:q} "
        "--base {input.base:q} --corpus-dir {params.corpus_dir:q} --out {output:q} --threads {threads:q} "
        "--tensorboard {params.tensorboard:q} > {log:q} 2>&1"


# The layer sweep: one of the sweep's methods for one other set of MoE layers, setting and seed; the same job as
# recovery_run (launcher, GPU) with the sweep's settings, files and plugin inputs.
use rule recovery_run as recovery_layers_run with:
    input:
        base=rules.base_model.output.model,
        corpus=corpus_files(config["recovery"]["corpus"]),
        code=router_code("recovery", get_recovery_layers_settings),
        plugins=plugin_code(get_recovery_layers_settings),
    output:
        paths.record(paths.RECOVERY_LAYERS_RUN),
    params:
        settings=get_recovery_layers_settings,
        corpus_dir=get_corpus_dir,
        launch=launcher(config["recovery"]["train"]),
        tensorboard=tensorboard_dir(paths.RECOVERY_LAYERS_RUN),
    log:
        paths.log(paths.RECOVERY_LAYERS_RUN["key"]),
    benchmark:
        paths.benchmark(paths.RECOVERY_LAYERS_RUN["key"])


rule recovery_design:
    """The identifiability sweep for one seed: the per-token oracle of every base-model layer for DIFF and
    each SIM scale of recovery.design. Seconds of work: no router trains."""
    input:
        base=rules.base_model.output.model,
        corpus=corpus_files(config["recovery"]["corpus"]),
        code=code_of("recovery-design"),
    output:
        paths.record(paths.RECOVERY_DESIGN),
    params:
        settings=json.dumps(recovery_design_settings(config), sort_keys=True),
        corpus_dir=get_corpus_dir,
    threads: 1
    resources:
        gpu=config["recovery"]["train"]["processes"],
    conda:
        CONDA_ENV
    log:
        paths.log(paths.RECOVERY_DESIGN["key"]),
    benchmark:
        paths.benchmark(paths.RECOVERY_DESIGN["key"])
    shell:
        "python -m moe_rpo recovery-design --seed {wildcards.seed:q} --settings {params.settings:q} "
        "--base {input.base:q} --corpus-dir {params.corpus_dir:q} --out {output:q} --threads {threads:q} > {log:q} 2>&1"
