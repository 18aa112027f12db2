# Language-model experiments: the dense base model (pretrained here, or GPT-2 from Hugging Face), then the
# routing-recovery runs (one job per setting and seed, every router method inside), tables and figures.


wildcard_constraints:
    setting="|".join(RECOVERY_SETTINGS),


rule base_model:
    """Pretrain the dense base model on its corpus (or load GPT-2); record its validation loss."""
    input:
        corpus=corpus_files(config["base_model"]["corpus"]),
        code=sources("lm/base.py", "models/*.py", "training/*.py", "data/tokens.py"),
    output:
        model="results/lm/base/model.pt",
        record="results/lm/base/model.json",
    params:
        settings=json.dumps(config["base_model"], sort_keys=True),
        corpus_dir=lambda wc, input: os.path.dirname(input.corpus[0]),
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_base/base_model.log",
    benchmark:
        "results/benchmarks/lm_base/base_model.tsv"
    shell:
        "python -m moe_rpo base-model --settings {params.settings:q} --corpus-dir {params.corpus_dir} "
        "--out {output.model} --threads {threads} > {log} 2>&1"


rule recovery_run:
    """Every router method of the recovery experiment for one setting (diff / sim<scale>) and one seed."""
    input:
        base="results/lm/base/model.pt",
        corpus=corpus_files(config["recovery"]["corpus"]),
        code=sources("lm/recovery.py", "models/*.py", "routers/*.py", "training/*.py", "data/tokens.py"),
    output:
        "results/lm/recovery/{setting}/seed{seed}.json",
    params:
        settings=json.dumps(recovery_run_settings(config), sort_keys=True),
        corpus_dir=lambda wc, input: os.path.dirname(input.corpus[0]),
    threads: 1
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=480,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_recovery/{setting}/seed{seed}.log",
    benchmark:
        "results/benchmarks/lm_recovery/{setting}/seed{seed}.tsv"
    shell:
        "python -m moe_rpo recovery {wildcards.setting} --seed {wildcards.seed} --settings {params.settings:q} "
        "--base {input.base} --corpus-dir {params.corpus_dir} --out {output} --threads {threads} > {log} 2>&1"


rule tables_lm_recovery:
    """Final numbers per setting, method and seed, and their spread over seeds."""
    input:
        runs=RECOVERY_RUNS,
        code=sources("tables.py"),
    output:
        "results/tables/lm_recovery_seeds.csv",
        "results/tables/lm_recovery_summary.csv",
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
        code=sources("figures/*.py"),
    output:
        figure_outputs(PAGE_BY_SLUG["lm_recovery"]),
    params:
        claim_scale=config["claims"]["recovery_sim_scale"],
        threshold=config["claims"]["recovery_accuracy"],
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
