# The toy experiments: one job per experiment and seed, then one tables job and one figures job
# per experiment (figures read saved arrays and tables, so a figure tweak never re-runs training).


rule toy_run:
    """Train every method of one toy experiment for one seed."""
    input:
        code=lambda wc: command_code("toy", f"moe_rpo.toy.{wc.experiment}"),  # imported by name
    output:
        arrays="results/toy/{experiment}/seed{seed}.npz",
        record="results/toy/{experiment}/seed{seed}.json",
    params:
        settings=lambda wc: settings_json(wc.experiment),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    log:
        "results/logs/toy_{experiment}/seed{seed}.log",
    benchmark:
        "results/benchmarks/toy_{experiment}/seed{seed}.tsv"
    shell:
        "python -m moe_rpo toy {wildcards.experiment} --seed {wildcards.seed} --settings {params.settings:q} "
        "--out results/toy/{wildcards.experiment}/seed{wildcards.seed} > {log} 2>&1"


for page in TOY_PAGES:

    rule:
        name:
            f"tables_{page['slug']}"
        input:
            runs=expand("results/toy/{experiment}/seed{seed}.json", experiment=page["experiment"], seed=SEEDS),
            code=command_code("tables"),
        output:
            reported([f"results/tables/toy_{page['experiment']}_seeds.csv"]
                     + [f"results/tables/{stem}.csv" for stem in page["tables"]], page["slug"]),
        params:
            experiment=page["experiment"],
            caption=page["summary"],
        localrule: True  # seconds of work: not worth a cluster job
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            CONDA_ENV
        log:
            f"results/logs/toy_{page['experiment']}/tables.log",
        benchmark:
            f"results/benchmarks/toy_{page['experiment']}/tables.tsv"
        shell:
            "python -m moe_rpo tables {params.experiment} --runs {input.runs} --out-dir results/tables > {log} 2>&1"

    rule:
        name:
            f"figures_{page['slug']}"
        input:
            arrays=expand("results/toy/{experiment}/seed{seed}.npz", experiment=page["experiment"], seed=SEEDS),
            tables=[f"results/tables/{stem}.csv" for stem in page["tables"]],
            code=command_code("figures"),
        output:
            reported(figure_outputs(page), page["slug"]),
        params:
            experiment=page["experiment"],
            caption=page["summary"],
            seed=config["report"]["trajectory_seed"],
        localrule: True  # seconds of work: not worth a cluster job
        threads: 1
        resources:
            mem_mb=4000,
            runtime=15,
        conda:
            CONDA_ENV
        log:
            f"results/logs/toy_{page['experiment']}/figures.log",
        benchmark:
            f"results/benchmarks/toy_{page['experiment']}/figures.tsv"
        shell:
            "python -m moe_rpo figures {params.experiment} --runs {input.arrays} --tables-dir results/tables "
            "--seed {params.seed} --out-dir results/figures > {log} 2>&1"


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
