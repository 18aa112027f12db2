# GPTs trained from scratch (Shakespeare MoE, pretraining): one job per method and seed; their tables and
# figures, and the routerless comparison read from the Shakespeare runs.


rule train_run:
    """One method of a from-scratch training experiment (shakespeare_moe, pretraining) for one seed."""
    input:
        corpus=lambda wc: corpus_files(config[wc.training]["corpus"]),
        code=command_code("train"),
    output:
        "results/lm/{training}/{method}/seed{seed}.json",
    params:
        settings=lambda wc: json.dumps(training_run_settings(config, wc.training, wc.method), sort_keys=True),
        corpus_dir=lambda wc, input: os.path.dirname(input.corpus[0]),
        launch=lambda wc: launcher(config[wc.training]["train"]),
    threads: 1
    resources:
        gpu=lambda wc: config[wc.training]["train"]["processes"],
        mem_mb=16000,
        runtime=720,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_{training}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/lm_{training}/{method}/seed{seed}.tsv"
    shell:
        "{params.launch} train {wildcards.training} {wildcards.method} --seed {wildcards.seed} "
        "--settings {params.settings:q} --corpus-dir {params.corpus_dir} --out {output} --threads {threads} "
        "> {log} 2>&1"


rule tables_lm_training:
    """Final numbers per method and seed of a training experiment, and their spread over seeds."""
    input:
        runs=lambda wc: records(config, wc.training),
        code=command_code("tables"),
    output:
        reported(["results/tables/lm_{training}_seeds.csv", "results/tables/lm_{training}_summary.csv"], "lm_{training}"),
    params:
        caption=lambda wc: page_summary(f"lm_{wc.training}"),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_{training}/tables.log",
    benchmark:
        "results/benchmarks/lm_{training}/tables.tsv"
    shell:
        "python -m moe_rpo tables {wildcards.training} --runs {input.runs} --out-dir results/tables > {log} 2>&1"


rule figures_lm_training:
    """Training and validation curves and final losses of a training experiment."""
    input:
        runs=lambda wc: records(config, wc.training),
        tables="results/tables/lm_{training}_seeds.csv",
        code=command_code("figures"),
    output:
        reported([f"results/figures/lm_{{training}}_{name}.{ext}" for name in ("curves", "final") for ext in ("png", "pdf")],
                 "lm_{training}"),
    params:
        caption=lambda wc: page_summary(f"lm_{wc.training}"),
        # Shakespeare: the curves show the paper's four methods (top-1, top-2, EM, RPO) where they run
        methods=lambda wc: (" ".join(method_name({"router": arm_router(config, arm), "k": k}) for arm, k in
                                     SHAKESPEARE_PAPER_METHODS.values()) if wc.training == "shakespeare_moe" else ""),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_{training}/figures.log",
    benchmark:
        "results/benchmarks/lm_{training}/figures.tsv"
    shell:
        "python -m moe_rpo figures {wildcards.training} --runs {input.runs} --tables-dir results/tables "
        "--methods {params.methods} --out-dir results/figures > {log} 2>&1"


rule tables_lm_routerless:
    """The routerless comparison: the Shakespeare runs of its fixed and learned routers."""
    input:
        runs=records(config, "routerless"),
        code=command_code("tables"),
    output:
        reported(["results/tables/lm_routerless_seeds.csv", "results/tables/lm_routerless_summary.csv"], "lm_routerless"),
    params:
        caption=page_summary("lm_routerless"),
        section=json.dumps(config["routerless"], sort_keys=True),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_routerless/tables.log",
    benchmark:
        "results/benchmarks/lm_routerless/tables.tsv"
    shell:
        "python -m moe_rpo tables routerless --runs {input.runs} --settings {params.section:q} "
        "--out-dir results/tables > {log} 2>&1"
