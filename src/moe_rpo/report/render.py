"""Render the HTML report from the generated files: an index with the claims checklist and one page per
experiment. Every number shown is read from results_dir; a missing input is an error, never a blank."""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from moe_rpo import paths
from moe_rpo.experiments import EXPERIMENTS, benchmark_recovery_methods, load
from moe_rpo.io import read_json
from moe_rpo.sections import benchmark_toy_settings
from moe_rpo.verdicts import VERDICTS


def _require(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"missing report input: {path}")
    return path


def fmt(value) -> str:
    """A number with 4 significant digits; anything else as text."""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def comparison_line(comparison: dict) -> str:
    """One comparison of a claim: the effect with its 95% interval and the side of the threshold the claim needs."""
    c = comparison
    interval = f" [{fmt(c['low'])}, {fmt(c['high'])}], n={c['n']}" if c["from_seeds"] else ""
    return f"{c['label']}: {fmt(c['value'])}{interval} (claim: {c['side']} {fmt(c['threshold'])})"


SUMMARY_STATS = ("mean", "std", "median", "min", "max")  # a summary table's columns per metric (tables.py)
# About as many characters as a table row of the pages' 70rem column holds at the tables' .9rem (checked in Chromium
# at 1280 px by the browser test): a wider table is shown as several, each repeating the row labels.
ROW_CHARS = 120


def _mean_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return fmt(mean) if math.isnan(std) else f"{fmt(mean)} ± {std:.2g}"  # the spread to 2 digits


def compact_summary(df) -> tuple:
    """A table as a page shows it, and its label columns. A summary table: each metric's mean ± std over seeds in one
    cell (the CSV also holds the median, min and max), labelled by its other columns; any other table as it is,
    labelled by its columns before the first float column."""
    metrics = [column.removesuffix("_mean") for column in df.columns if column.endswith("_mean")
               and all(f"{column.removesuffix('_mean')}_{stat}" in df.columns for stat in SUMMARY_STATS)]
    if not metrics:
        floats = [i for i, column in enumerate(df.columns) if df[column].dtype.kind == "f"]
        return df, list(df.columns[:floats[0] if floats else 0])
    stats = {f"{metric}_{stat}" for metric in metrics for stat in SUMMARY_STATS}
    out = df[[column for column in df.columns if column not in stats]].copy()
    labels = list(out.columns)
    for metric in metrics:
        out[metric] = [_mean_std(mean, std) for mean, std in zip(df[f"{metric}_mean"], df[f"{metric}_std"])]
    return out, labels


def _chars(df, column) -> int:
    """A column's width in characters: its widest cell, or its name up to where a long one wraps."""
    cells = [fmt(value) if isinstance(value, float) else str(value) for value in df[column]]
    return max([min(len(str(column)), 14), *map(len, cells)]) + 3  # + the cell's padding


def column_chunks(df, labels: list[str]) -> list:
    """The table split by columns into parts that fit a page row, each part repeating the label columns."""
    chars = {column: _chars(df, column) for column in df.columns}
    labels_width, parts, width = sum(chars[column] for column in labels), [[]], 0
    for column in (c for c in df.columns if c not in labels):
        if parts[-1] and labels_width + width + chars[column] > ROW_CHARS:
            parts.append([])
            width = 0
        parts[-1].append(column)
        width += chars[column]
    return [df[labels + part] for part in parts]


def html_table(path: Path) -> str:
    """A table as its page shows it: summaries compacted, split by columns into parts that fit the page."""
    import pandas as pd

    df, labels = compact_summary(pd.read_csv(_require(path)))
    return "\n".join(part.to_html(index=False, border=0, classes="data sortable", na_rep="–", float_format=fmt)
                     for part in column_chunks(df, labels))


def _benchmark(path: Path) -> dict:
    """Wall time and peak memory from a Snakemake benchmark file."""
    import pandas as pd

    bench = pd.read_csv(_require(path), sep="\t", na_values=["-", "NA"])
    return {"wall_s": float(bench["s"].mean()), "max_rss_mb": float(bench["max_rss"].mean())}


def page_runs(results_dir: Path, experiment, config: dict) -> list[dict]:
    """Per job of the experiment: its label, run record (settings, provenance) and benchmark."""
    runs = []
    for job in experiment.jobs(config):
        record = read_json(results_dir / f"{job.record}.json")
        seeds = record["seeds"] if "seeds" in record else [record["seed"]]  # a toy's one job runs every seed
        runs.append({"label": job.label, "key": job.key, "seeds": seeds,
                     **_benchmark(results_dir / paths.BENCHMARK.format(key=job.key)),
                     "settings": record["settings"], **record["provenance"]})
    return runs


def budget_line(runs: list[dict], all_runs: dict[str, float], min_seeds: int) -> str:
    """What the run's budget gave this page: its jobs' compute, their share of every experiment's jobs, and
    its seeds against the claims' minimum."""
    minutes, total = sum(run["wall_s"] for run in runs) / 60, sum(all_runs.values()) / 60
    seeds = sorted({seed for run in runs for seed in run["seeds"]})
    listed = ", ".join(map(str, seeds)) if len(seeds) <= 10 else f"{seeds[0]}-{seeds[-1]}"
    return (f"{len(runs)} jobs, {minutes:.1f} minutes of job time (wall time summed over its jobs): "
            f"{minutes / total:.0%} of the {total:.0f} minutes that all experiments' jobs took in this run (some "
            f"pages share jobs). {len(seeds)} seeds ({listed}); a claim "
            f"needs at least {min_seeds}, and a 95% interval narrows roughly as 1/sqrt(seeds).")


def base_model_facts(experiment, results_dir: Path, config: dict) -> dict:
    """What the LM pages say about the base model, from its record and benchmark."""
    record = read_json(results_dir / f"{paths.BASE_MODEL['record']}.json")
    model = record["config"]
    facts = {"source": ("pretrained here" if record["source"] == "pretrain"
                        else f"Hugging Face {record['settings']['hf_name']}"),
             "corpus": record["settings"]["corpus"], "parameters": f"{record['parameters']:,}",
             "shape": f"{model['n_layer']} layers, {model['n_head']} heads, {model['n_embd']} dims, "
                      f"context {model['block_size']}, vocabulary {model['vocab_size']}",
             "validation loss": fmt(record["val_loss"])}
    if record["source"] == "pretrain":
        facts["pretraining"] = (f"{record['settings']['train']['steps']} steps, batch "
                                f"{record['settings']['train']['batch_size']} x {record['settings']['train']['block_size']}"
                                f" tokens, {fmt(_benchmark(results_dir / paths.BENCHMARK.format(key=paths.BASE_MODEL['key']))['wall_s'])} s")
    return facts


def training_facts(experiment, results_dir: Path, config: dict) -> dict:
    """What a from-scratch experiment's page says about the scale it ran at, from the config."""
    return scale_facts(config[experiment.section])


def scale_facts(section: dict) -> dict:
    """The corpus, model, training and seeds of a from-scratch training section."""
    model, train = section["model"], section["train"]
    return {"corpus": section["corpus"],
            "model": f"{model['n_layer']} layers, {model['n_head']} heads, {model['n_embd']} dims, context "
                     f"{model['block_size']}; MoE layers: {section['moe_layers']}, {section['num_experts']} experts",
            "training": f"{train['steps']} steps of {train['batch_size']} x {train['block_size']} tokens, lr {train['lr']}",
            "seeds": ", ".join(map(str, section["seeds"]))}


def resolved_line(results_dir: Path) -> str:
    """How many of the benchmark's pairwise differences (an arm against top-1 or top-2 in one ranked column) the
    run resolves: the 95% interval of the probability of improvement excludes 0.5."""
    import pandas as pd

    table = pd.read_csv(_require(results_dir / paths.TABLE.format(table="lm_benchmark_improvement_values")))
    tested = table.dropna(subset=["low"])
    better = int((tested["resolved"] & (tested["low"] > 0.5)).sum())
    return (f"{int(tested['resolved'].sum())} of {len(tested)} pairwise differences resolved ({better} in the arm's "
            f"favour); {len(table) - len(tested)} more have too few seeds for an interval")


def benchmark_facts(experiment, results_dir: Path, config: dict) -> dict:
    """The scale of each column of the router benchmark, then the base model its recovery jobs use."""
    toy, recovery, bench = config["toy"]["routing"], config["recovery"], config["benchmark"]
    shakespeare = scale_facts(config["shakespeare_moe"])
    seeds = benchmark_toy_settings(config)["seeds"]
    trained = len(benchmark_recovery_methods(config, bench["recovery"]["settings"][0]))
    return {"resolved differences": resolved_line(results_dir),
            "toy 1": f"{toy['steps']} steps, {len(seeds)} seeds",
            "recovery": f"{', '.join(bench['recovery']['settings'])} (the recovery experiment's runs); "
                        f"{recovery['train']['steps']} steps of {recovery['train']['batch_size']} x "
                        f"{recovery['train']['block_size']} tokens; seeds {', '.join(map(str, recovery['seeds']))}"
                        + ("" if trained == len(bench["methods"]) else
                           f"; {trained} of the {len(bench['methods'])} methods (benchmark.recovery.methods)"),
            "Shakespeare": f"{shakespeare['model']}; {shakespeare['training']}; seeds {shakespeare['seeds']}",
            **{f"base model: {key}": value for key, value in base_model_facts(experiment, results_dir, config).items()}}


def environment(runs: list[dict]) -> dict[str, str]:
    """Package versions, python and platform over the runs (several values joined if the runs differ)."""
    env = {pkg: sorted({run["versions"].get(pkg, "not recorded") for run in runs}) for pkg in runs[0]["versions"]}
    env |= {key: sorted({run[key] for run in runs}) for key in ("python", "platform")}
    return {key: ", ".join(values) for key, values in env.items()}


def corpus_rows(results_dir: Path, names: list[str]) -> list[dict]:
    """One row per prepared corpus, read from its meta.json."""
    rows = []
    for name in names:
        meta = read_json(results_dir / "data" / name / "meta.json")
        rows.append({"name": name, "source": meta["source"], "tokenizer": meta["tokenizer"],
                     "vocab_size": meta["vocab_size"], "documents": meta["documents"],
                     "empty_documents": meta["empty_documents"], "invalid_utf8": meta["invalid_utf8_sequences"],
                     "train_tokens": meta["splits"]["train"]["tokens"], "val_tokens": meta["splits"]["val"]["tokens"],
                     "shards": meta["shards"]})
    return rows


def render_report(results_dir: Path, out_dir: Path, config: dict, templates_dir: Path,
                  configured_by: str = "") -> list[Path]:
    """Write out_dir/index.html and out_dir/{slug}.html for every page, copy ../static/style.css and sort.js next to them
    (relative to templates_dir), and return the HTML paths written. The index says what produced it
    (`configured_by`) and, when the run judged its claims under readings of the paper, which."""
    import jinja2
    import yaml

    results_dir, out_dir, templates_dir = Path(results_dir), Path(out_dir), Path(templates_dir)
    claims = read_json(results_dir / "claims.json")["claims"]
    pages = list(EXPERIMENTS.values())
    slugs = {page.stem for page in pages}
    for claim in claims:
        if claim["experiment"] not in slugs:
            raise ValueError(f"claim {claim['id']!r} names unknown report page {claim['experiment']!r}")
        claim["comparison_lines"] = [(comparison_line(c), c["verdict"], c["method"]) for c in claim["comparisons"]]

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    common = {"title": config["report"]["title"], "pages": pages, "claims": claims, "verdicts": VERDICTS}
    out_dir.mkdir(parents=True, exist_ok=True)
    for static in ("style.css", "sort.js"):  # the pages' style and their sortable tables
        shutil.copyfile(_require(templates_dir.parent / "static" / static), out_dir / static)

    written = [out_dir / "index.html"]
    corpora = corpus_rows(results_dir, sorted(config["corpora"]))
    readings = list(config["claims"]["readings"])
    written[0].write_text(env.get_template("index.html.j2").render(
        current="index", corpora=corpora, configured_by=configured_by, readings=readings,
        read=[c for c in claims if c.get("robustness")], **common))
    page_jobs = {page.stem: page_runs(results_dir, page, config) for page in pages}
    all_runs = {run["key"]: run["wall_s"] for runs in page_jobs.values() for run in runs}  # pages share some jobs
    for page in pages:
        figures = []
        for stem in page.figures:
            png, pdf = (_require(results_dir / paths.FIGURE.format(figure=stem, ext=ext)) for ext in ("png", "pdf"))
            figures.append({"stem": stem, "png": os.path.relpath(png, out_dir), "pdf": os.path.relpath(pdf, out_dir)})
        tables = [{"stem": stem, "html": html_table(results_dir / paths.TABLE.format(table=stem))} for stem in page.shown]
        runs = page_jobs[page.stem]
        facts = load(page.facts)(page, results_dir, config) if page.facts else None
        html = env.get_template("experiment.html.j2").render(
            facts_title=page.facts_title if facts else None, facts=facts,
            cpu_scale=page.on_base_model and config["base_model"]["source"] == "pretrain",
            current=page.stem, page=page, figures=figures, tables=tables, runs=runs,
            page_claims=[c for c in claims if c["experiment"] == page.stem],
            total_wall_s=sum(run["wall_s"] for run in runs), environment=environment(runs),
            budget=budget_line(runs, all_runs, config["claims"]["min_seeds"]),
            settings_yaml=yaml.safe_dump(runs[0]["settings"], sort_keys=False, default_flow_style=None),
            **common)
        written.append(out_dir / Path(paths.REPORT_PAGE.format(page=page.stem)).name)
        written[-1].write_text(html)
    return written
