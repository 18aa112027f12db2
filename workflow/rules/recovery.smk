# GPT-2 optimal routing recovery: one job per setting (diff / sim<scale>) and seed, every router method
# inside. Its tables and figures: workflow/rules/experiments.smk.


rule recovery_run:
    """Every router method of the recovery experiment for one setting (diff / sim<scale>) and one seed."""
    input:
        base=rules.base_model.output.model,
        corpus=corpus_files(config["recovery"]["corpus"]),
        code=code_of("recovery"),
    output:
        paths.record(paths.RECOVERY_RUN, recovery="recovery"),
    params:
        settings=json.dumps(recovery_run_settings(config), sort_keys=True),
        corpus_dir=get_corpus_dir,
        launch=launcher(config["recovery"]["train"]),
    threads: 1
    resources:
        gpu=config["recovery"]["train"]["processes"],
    conda:
        CONDA_ENV
    log:
        paths.log(paths.RECOVERY_RUN["key"], recovery="recovery"),
    benchmark:
        paths.benchmark(paths.RECOVERY_RUN["key"], recovery="recovery")
    shell:
        "{params.launch} recovery {wildcards.setting} --seed {wildcards.seed} --settings {params.settings:q} "
        "--base {input.base} --corpus-dir {params.corpus_dir} --out {output} --threads {threads} > {log} 2>&1"
