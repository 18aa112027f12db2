# Every experiment of the registry (moe_rpo/experiments.py) gets a tables rule and a figures rule, named
# tables_<stem> and figures_<stem>; figures read saved records and tables, so a figure tweak never re-runs
# training. Both are seconds of work: local rules, never cluster jobs.


for experiment in EXPERIMENTS.values():
    jobs = experiment.jobs(config)
    view = json.dumps(experiment.view(config), sort_keys=True)

    rule:
        name:
            f"tables_{experiment.stem}"
        input:
            runs=records(jobs),
            code=code_of("tables", *experiment.modules("tables")),
        output:
            reported([paths.table(name) for name in experiment.tables], experiment.stem),
        params:
            experiment=experiment.name,
            view=view,
            caption=experiment.summary,
        localrule: True
        threads: 1
        conda:
            CONDA_ENV
        log:
            paths.log(f"{experiment.stem}/tables"),
        benchmark:
            paths.benchmark(f"{experiment.stem}/tables")
        shell:
            "python -m moe_rpo tables {params.experiment:q} --runs {input.runs:q} --settings {params.view:q} "
            "--out {output:q} > {log:q} 2>&1"

    rule:
        name:
            f"figures_{experiment.stem}"
        input:
            runs=records(jobs),
            files=job_files(jobs),
            tables=getattr(rules, f"tables_{experiment.stem}").output,
            code=code_of("figures", *experiment.modules("figures")),
        output:
            reported([path for name in experiment.figures for path in paths.figures(name)], experiment.stem),
        params:
            experiment=experiment.name,
            view=view,
            caption=experiment.summary,
        localrule: True
        threads: 1
        conda:
            CONDA_ENV
        log:
            paths.log(f"{experiment.stem}/figures"),
        benchmark:
            paths.benchmark(f"{experiment.stem}/figures")
        shell:
            "python -m moe_rpo figures {params.experiment:q} --runs {input.runs:q} --tables {input.tables:q} "
            "--settings {params.view:q} --out {output:q} > {log:q} 2>&1"
