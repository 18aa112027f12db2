# GPT-2 optimal routing recovery: one job per setting (diff / sim<scale>), method and seed, each with the same
# distractors, batches and evaluation windows (drawn from the seed); in the router benchmark's settings also the
# benchmark's other methods, whose column reads these runs. Its tables and figures: workflow/rules/experiments.smk.


rule recovery_run:
    """One router method of the recovery experiment (or in the benchmark's settings the benchmark's) for one setting
    (diff / sim<scale>) and one seed."""
    input:
        base=rules.base_model.output.model,
        corpus=corpus_files(config["recovery"]["corpus"]),
        code=router_code(job_kinds.RECOVERY_RUN),
        plugins=plugin_code(job_kinds.RECOVERY_RUN),
    output:
        paths.record(job_kinds.RECOVERY_RUN.files),
    params:
        settings=job_settings(job_kinds.RECOVERY_RUN),
        corpus_dir=get_corpus_dir,
        launch=job_launch(job_kinds.RECOVERY_RUN),
        tensorboard=tensorboard_dir(job_kinds.RECOVERY_RUN),
    threads: 1
    resources:
        gpu=job_gpus(job_kinds.RECOVERY_RUN),
    conda:
        CONDA_ENV
    log:
        paths.log(job_kinds.RECOVERY_RUN.files["key"]),
    benchmark:
        paths.benchmark(job_kinds.RECOVERY_RUN.files["key"])
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
        code=router_code(job_kinds.RECOVERY_LAYERS_RUN),
        plugins=plugin_code(job_kinds.RECOVERY_LAYERS_RUN),
    output:
        paths.record(job_kinds.RECOVERY_LAYERS_RUN.files),
    params:
        settings=job_settings(job_kinds.RECOVERY_LAYERS_RUN),
        corpus_dir=get_corpus_dir,
        launch=job_launch(job_kinds.RECOVERY_LAYERS_RUN),
        tensorboard=tensorboard_dir(job_kinds.RECOVERY_LAYERS_RUN),
    resources:
        gpu=job_gpus(job_kinds.RECOVERY_LAYERS_RUN),
    log:
        paths.log(job_kinds.RECOVERY_LAYERS_RUN.files["key"]),
    benchmark:
        paths.benchmark(job_kinds.RECOVERY_LAYERS_RUN.files["key"])


rule recovery_design:
    """The identifiability sweep for one seed: the per-token oracle of every base-model layer for DIFF and
    each SIM scale of recovery.design. Seconds of work: no router trains."""
    input:
        base=rules.base_model.output.model,
        corpus=corpus_files(config["recovery"]["corpus"]),
        code=router_code(job_kinds.RECOVERY_DESIGN),
    output:
        paths.record(job_kinds.RECOVERY_DESIGN.files),
    params:
        settings=job_settings(job_kinds.RECOVERY_DESIGN),
        corpus_dir=get_corpus_dir,
        launch=job_launch(job_kinds.RECOVERY_DESIGN),
    threads: 1
    resources:
        gpu=job_gpus(job_kinds.RECOVERY_DESIGN),
    conda:
        CONDA_ENV
    log:
        paths.log(job_kinds.RECOVERY_DESIGN.files["key"]),
    benchmark:
        paths.benchmark(job_kinds.RECOVERY_DESIGN.files["key"])
    shell:
        "{params.launch:q} recovery-design --seed {wildcards.seed:q} --settings {params.settings:q} "
        "--base {input.base:q} --corpus-dir {params.corpus_dir:q} --out {output:q} --threads {threads:q} > {log:q} 2>&1"
