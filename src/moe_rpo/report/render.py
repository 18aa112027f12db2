"""Render the HTML report from the generated files: an index with the claims checklist and one page per
experiment. Every number shown is read from results_dir; a missing input is an error, never a blank."""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from moe_rpo.io import read_json
from moe_rpo.report.pages import PAGES


def _require(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"missing report input: {path}")
    return path


def fmt(value) -> str:
    """A number with 4 significant digits; anything else as text."""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def measured_lines(measured: dict, prefix: str = "") -> list[str]:
    """One line per measured quantity: median, range and seed count of a spread, or the plain value."""
    lines = []
    for name, value in measured.items():
        if isinstance(value, dict) and "median" in value:
            lines.append(f"{prefix}{name}: median {fmt(value['median'])} "
                         f"(range {fmt(value['min'])}–{fmt(value['max'])}, n={value['n']})")
        elif isinstance(value, dict):
            lines += measured_lines(value, f"{prefix}{name} / ")
        else:
            lines.append(f"{prefix}{name}: {fmt(value)}")
    return lines


def html_table(path: Path) -> str:
    import pandas as pd

    df = pd.read_csv(_require(path))
    return df.to_html(index=False, border=0, classes="data", na_rep="–", float_format=fmt)


def seed_runs(results_dir: Path, experiment: str, seeds: list[int]) -> list[dict]:
    """Per seed: the run record (settings, provenance) and the Snakemake benchmark (wall time, peak memory)."""
    import pandas as pd

    runs = []
    for seed in seeds:
        record = read_json(results_dir / "toy" / experiment / f"seed{seed}.json")
        bench = pd.read_csv(_require(results_dir / "benchmarks" / f"toy_{experiment}" / f"seed{seed}.tsv"),
                            sep="\t", na_values=["-", "NA"])
        runs.append({"seed": seed, "wall_s": float(bench["s"].mean()), "max_rss_mb": float(bench["max_rss"].mean()),
                     "settings": record["settings"], **record["provenance"]})
    return runs


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


def render_report(results_dir: Path, out_dir: Path, config: dict, templates_dir: Path) -> list[Path]:
    """Write out_dir/index.html and out_dir/{slug}.html for every page, copy ../static/style.css next to them
    (relative to templates_dir), and return the HTML paths written."""
    import jinja2
    import yaml

    results_dir, out_dir, templates_dir = Path(results_dir), Path(out_dir), Path(templates_dir)
    claims = read_json(results_dir / "claims.json")["claims"]
    slugs = {page["slug"] for page in PAGES}
    for claim in claims:
        if claim["experiment"] not in slugs:
            raise ValueError(f"claim {claim['id']!r} names unknown report page {claim['experiment']!r}")
        claim["measured_lines"] = measured_lines(claim["measured"])

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    common = {"title": config["report"]["title"], "pages": PAGES, "claims": claims}
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_require(templates_dir.parent / "static" / "style.css"), out_dir / "style.css")

    written = [out_dir / "index.html"]
    corpora = corpus_rows(results_dir, sorted(config["corpora"]))
    written[0].write_text(env.get_template("index.html.j2").render(current="index", corpora=corpora, **common))
    for page in PAGES:
        figures = []
        for stem in page["figures"]:
            png, pdf = (_require(results_dir / "figures" / f"{stem}.{ext}") for ext in ("png", "pdf"))
            figures.append({"stem": stem, "png": os.path.relpath(png, out_dir), "pdf": os.path.relpath(pdf, out_dir)})
        tables = [{"stem": stem, "html": html_table(results_dir / "tables" / f"{stem}.csv")} for stem in page["tables"]]
        runs = seed_runs(results_dir, page["experiment"], config["seeds"])
        html = env.get_template("experiment.html.j2").render(
            current=page["slug"], page=page, figures=figures, tables=tables, runs=runs,
            page_claims=[c for c in claims if c["experiment"] == page["slug"]],
            total_wall_s=sum(run["wall_s"] for run in runs), environment=environment(runs),
            settings_yaml=yaml.safe_dump(runs[0]["settings"], sort_keys=False, default_flow_style=None),
            **common)
        written.append(out_dir / f"{page['slug']}.html")
        written[-1].write_text(html)
    return written
