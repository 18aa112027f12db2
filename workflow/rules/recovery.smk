# GPT-2 optimal routing recovery: one job per setting (diff / sim<scale>) and seed, every router method
# inside; then its tables and figures.


rule recovery_run:
    """Every router method of the recovery experiment for one setting (diff / sim<scale>) and one seed."""
    input:
        base="results/lm/base/model.pt",
        corpus=corpus_files(config["recovery"]["corpus"]),
        code=command_code("recovery"),
    output:
        "results/lm/recovery/{setting}/seed{seed}.json",
    params:
        settings=json.dumps(recovery_run_settings(config), sort_keys=True),
        corpus_dir=lambda wc, input: os.path.dirname(input.corpus[0]),
        launch=launcher(config["recovery"]["train"]),
    threads: 1
    resources:
        gpu=config["recovery"]["train"]["processes"],
        mem_mb=16000,
        runtime=480,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_recovery/{setting}/seed{seed}.log",
    benchmark:
        "results/benchmarks/lm_recovery/{setting}/seed{seed}.tsv"
    shell:
        "{params.launch} recovery {wildcards.setting} --seed {wildcards.seed} --settings {params.settings:q} "
        "--base {input.base} --corpus-dir {params.corpus_dir} --out {output} --threads {threads} > {log} 2>&1"


rule tables_lm_recovery:
    """Final numbers per setting, method and seed, and their spread over seeds."""
    input:
        runs=RECOVERY_RUNS,
        code=command_code("tables"),
    output:
        reported(["results/tables/lm_recovery_seeds.csv", "results/tables/lm_recovery_summary.csv"], "lm_recovery"),
    params:
        caption=page_summary("lm_recovery"),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_recovery/tables.log",
    benchmark:
        "results/benchmarks/lm_recovery/tables.tsv"
    shell:
        "python -m moe_rpo tables recovery --runs {input.runs} --out-dir results/tables > {log} 2>&1"


rule figures_lm_recovery:
    """DIFF and SIM panels (routing accuracy and validation loss against steps) and the SIM scale sweep."""
    input:
        runs=RECOVERY_RUNS,
        tables="results/tables/lm_recovery_seeds.csv",
        code=command_code("figures"),
    output:
        reported(figure_outputs(PAGE_BY_SLUG["lm_recovery"]), "lm_recovery"),
    params:
        caption=page_summary("lm_recovery"),
        claim_scale=config["claims"]["recovery_sim_scale"],
        threshold=config["claims"]["recovery_accuracy"],
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_recovery/figures.log",
    benchmark:
        "results/benchmarks/lm_recovery/figures.tsv"
    shell:
        "python -m moe_rpo figures recovery --runs {input.runs} --tables-dir results/tables "
        "--sim-scale {params.claim_scale} --threshold {params.threshold} --out-dir results/figures > {log} 2>&1"
