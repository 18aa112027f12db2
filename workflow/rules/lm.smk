# Language-model experiments: the dense base model (pretrained here, or GPT-2 from Hugging Face), then the
# routing-recovery runs (one job per setting and seed, every router method inside), tables and figures.


wildcard_constraints:
    setting="|".join(RECOVERY_SETTINGS),
    training="|".join(TRAINING_EXPERIMENTS),


rule base_model:
    """Pretrain the dense base model on its corpus (or load GPT-2); record its validation loss."""
    input:
        corpus=corpus_files(config["base_model"]["corpus"]),
        # a dense GPT has no MoE layer: the routing code it imports (routers, dispatch, metrics) never runs
        code=command_code("base-model", exclude=("moe_rpo.routers", "moe_rpo.models.moe", "moe_rpo.models.recovery")),
    output:
        model="results/lm/base/model.pt",
        record="results/lm/base/model.json",
    params:
        settings=json.dumps(config["base_model"], sort_keys=True),
        corpus_dir=lambda wc, input: os.path.dirname(input.corpus[0]),
        launch=launcher(config["base_model"]["train"]),
    threads: 2
    priority: 20  # every recovery job waits for it
    resources:
        gpu=config["base_model"]["train"]["processes"],
        mem_mb=16000,
        runtime=240,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_base/base_model.log",
    benchmark:
        "results/benchmarks/lm_base/base_model.tsv"
    shell:
        "{params.launch} base-model --settings {params.settings:q} --corpus-dir {params.corpus_dir} "
        "--out {output.model} --threads {threads} > {log} 2>&1"


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


use rule recovery_run as benchmark_recovery_run with:
    output:
        "results/lm/benchmark_recovery/{setting}/seed{seed}.json",
    params:
        settings=json.dumps(recovery_run_settings(config, benchmark=True), sort_keys=True),
        corpus_dir=lambda wc, input: os.path.dirname(input.corpus[0]),
        launch=launcher(config["benchmark"]["recovery"]["train"]),
    resources:
        gpu=config["benchmark"]["recovery"]["train"]["processes"],
        mem_mb=16000,
        runtime=480,
    log:
        "results/logs/lm_benchmark_recovery/{setting}/seed{seed}.log",
    benchmark:
        "results/benchmarks/lm_benchmark_recovery/{setting}/seed{seed}.tsv"


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


rule toy_benchmark_run:
    """Toy 1 (routing) for exactly the benchmark's (router, k) pairs, one seed."""
    input:
        code=command_code("toy", "moe_rpo.toy.routing"),
    output:
        "results/toy/benchmark/seed{seed}.json",
        "results/toy/benchmark/seed{seed}.npz",
    params:
        settings=json.dumps(benchmark_toy_settings(config), sort_keys=True),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    log:
        "results/logs/toy_benchmark/seed{seed}.log",
    benchmark:
        "results/benchmarks/toy_benchmark/seed{seed}.tsv"
    shell:
        "python -m moe_rpo toy routing --seed {wildcards.seed} --settings {params.settings:q} "
        "--out results/toy/benchmark/seed{wildcards.seed} > {log} 2>&1"


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


rule tables_lm_benchmark:
    """The router benchmark: toy 1, the benchmark's recovery jobs and the Shakespeare runs, one row per router."""
    input:
        runs=records(config, "benchmark"),
        code=command_code("tables"),
    output:
        reported(["results/tables/lm_benchmark.csv", "results/tables/lm_benchmark_medians.csv"], "lm_benchmark"),
    params:
        caption=page_summary("lm_benchmark"),
        section=json.dumps(config["benchmark"], sort_keys=True),
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_benchmark/tables.log",
    benchmark:
        "results/benchmarks/lm_benchmark/tables.tsv"
    shell:
        "python -m moe_rpo tables benchmark --runs {input.runs} --settings {params.section:q} "
        "--out-dir results/tables > {log} 2>&1"


rule figures_lm_derived:
    """The routerless scatter plots and the benchmark heatmap, from their tables."""
    input:
        tables=lambda wc: ("results/tables/lm_routerless_seeds.csv" if wc.derived == "routerless"
                           else "results/tables/lm_benchmark_medians.csv"),
        code=command_code("figures"),
    output:
        reported(["results/figures/lm_{derived}.png", "results/figures/lm_{derived}.pdf"], "lm_{derived}"),
    params:
        caption=lambda wc: page_summary(f"lm_{wc.derived}"),
    wildcard_constraints:
        derived="routerless|benchmark",
    localrule: True  # seconds of work: not worth a cluster job
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        CONDA_ENV
    log:
        "results/logs/lm_{derived}/figures.log",
    benchmark:
        "results/benchmarks/lm_{derived}/figures.tsv"
    shell:
        "python -m moe_rpo figures {wildcards.derived} --runs {input.tables} --tables-dir results/tables "
        "--out-dir results/figures > {log} 2>&1"
