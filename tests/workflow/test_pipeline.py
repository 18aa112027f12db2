"""End to end: the Snakemake workflow on the smoke config, in a copy of the repository."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import check_pages, require_chromium, sortable_tables
from conftest import ENV, ROOT, copy_finished, snakemake

pytestmark = pytest.mark.slow


def test_pipeline_produces_figures_claims_and_report(finished):
    results = finished / "results"
    from moe_rpo.experiments import EXPERIMENTS

    for page in EXPERIMENTS.values():
        for stem in page.figures:
            for ext in ("png", "pdf"):
                assert (results / "figures" / f"{stem}.{ext}").stat().st_size > 1000
        for stem in page.shown:
            assert (results / "tables" / f"{stem}.csv").is_file()
        assert (results / "report" / f"{page.stem}.html").is_file()
    for experiment in ("routing", "collapse", "dilemma", "barrier"):
        assert (results / "logs" / f"toy_{experiment}" / "run.log").is_file()
    assert "100%" in (results / "logs" / "lm_recovery" / "sim0.3" / "rpo_k1" / "seed0.log").read_text()
    for run in ("lm_shakespeare_moe/rpo_k1/seed0", "lm_recovery/sim0.3/rpo_k1/seed0", "lm_base/base_model"):
        assert list((results / "tensorboard" / run).glob("events.out.tfevents.*")), run  # live curves
    claims = json.loads((results / "claims.json").read_text())["claims"]
    assert len(claims) >= 12 and {"lm_recovery_diff_unnormalized_finds_routing",
                                   "lm_recovery_sim_only_rpo_recovers"} <= {c["id"] for c in claims}
    shakespeare = [c for c in claims if c["experiment"] == "lm_shakespeare_moe"]  # its claims.readings ran
    assert shakespeare and all([row["reading"] for row in c["readings"]] == ["as run", "alternation_per_iteration"]
                               and c["robustness"] for c in shakespeare)


def test_pipeline_prepares_the_corpora_offline(finished):
    from moe_rpo.data.tokens import open_tokens, read_meta

    for corpus, tokenizer in [("shakespeare", "gpt2"), ("shakespeare_char", "char")]:
        out = finished / "results" / "data" / corpus
        meta = read_meta(out)
        assert meta["tokenizer"] == tokenizer and meta["shards"] == 2 and meta["documents"] == 80
        assert len(open_tokens(out, "train")) == meta["splits"]["train"]["tokens"] > 0
        assert len(open_tokens(out, "val")) == meta["splits"]["val"]["tokens"] > 0
        assert not list((out / "shards").glob("*.bin"))  # shard files are temporary
        assert "100%" in (finished / "results" / "logs" / f"data_{corpus}" / "shard1.log").read_text()


def test_second_run_has_nothing_to_do(finished):
    result = snakemake(finished, "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_report_pages_render_in_chromium(finished):
    require_chromium()
    pages = sorted((finished / "results" / "report").glob("*.html"))
    from moe_rpo.experiments import EXPERIMENTS

    assert len(pages) == len(EXPERIMENTS) + 1
    assert check_pages(pages) == []


def test_killed_run_resumes_to_the_same_numbers(finished, tmp_path):
    """Kill -9 a run while an LM job is training (once it has written a checkpoint), resume it: claims and
    tables equal the uninterrupted run's. One recovery run of a finished pipeline is deleted (RPO's: its
    alternating phases are the state a resume is likeliest to lose), so only it and what reads it run again."""
    workdir = copy_finished(finished, tmp_path / "run")
    shutil.rmtree(workdir / "results" / "lm" / "recovery" / "diff" / "rpo_k1")
    run = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/test.yaml"],
                           cwd=workdir, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    lm, deadline = workdir / "results" / "lm", time.time() + 300
    while not (lm.is_dir() and list(lm.rglob("*.ckpt"))) and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert list(lm.rglob("*.ckpt")), "no LM job was killed mid-training"
    assert snakemake(workdir, "--unlock").returncode == 0  # a hard kill leaves Snakemake's lock behind
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    compared = ["claims.json", *(path.relative_to(finished / "results")
                                 for path in (finished / "results" / "tables").glob("*_seeds.csv"))]
    assert len(compared) > 8
    for name in compared:
        assert (workdir / "results" / name).read_text() == (finished / "results" / name).read_text(), name


def test_lint_passes():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, env=ENV,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_snakemake_report_holds_every_figure_and_table(finished, tmp_path):
    import zipfile

    from moe_rpo.experiments import EXPERIMENTS

    report = tmp_path / "report.zip"
    result = snakemake(finished, "--report", str(report))
    assert result.returncode == 0, result.stderr[-4000:]
    names = {Path(name).name for name in zipfile.ZipFile(report).namelist()}  # stored as data/raw/<hash>/<name>
    for page in EXPERIMENTS.values():
        for stem in page.figures:
            assert f"{stem}.png" in names, stem
        for stem in page.shown:
            assert f"{stem}.csv" in names, stem


def test_every_product_is_a_target(finished, tmp_path):
    """Deleting any product of a finished run makes the next run remake it (issue 15, case 10)."""
    workdir = copy_finished(finished, tmp_path / "run")
    products = {"results/tables/toy_routing_seeds.csv": "tables_toy_routing", "results/lm/base/model.pt": "base_model",
                "results/toy/benchmark/run.npz": "toy_benchmark_run",
                "results/tables/lm_benchmark_values.csv": "tables_lm_benchmark"}
    for path in products:
        (workdir / path).unlink()
    result = snakemake(workdir, "-n")
    assert result.returncode == 0, result.stderr[-4000:]
    for rule in products.values():
        assert f"rule {rule}:" in result.stdout, rule


def test_a_truncated_record_is_set_aside_and_remade(finished, tmp_path):
    """A corrupt record is named and its job runs again, instead of the tables job failing on every rerun."""
    workdir = copy_finished(finished, tmp_path / "run")
    record = workdir / "results" / "toy" / "dilemma" / "run.json"
    record.write_text(record.read_text()[:100])
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "run.json cannot be read" in result.stderr and (record.parent / "run.json.corrupt").is_file()
    for name in ("claims.json", "tables/toy_dilemma_seeds.csv"):
        assert (workdir / "results" / name).read_text() == (finished / "results" / name).read_text(), name


def dry_run_jobs(workdir, *args: str) -> dict[str, dict]:
    """The jobs `snakemake -n` would run, by their output line: rule, inputs and reason."""
    result = snakemake(workdir, "-n", *args)
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = {}
    for block in result.stdout.split("\n\n"):
        if "    output: " in block and "rule " in block:
            field = {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1] for line in block.splitlines()
                     if line.startswith("    ") and ": " in line}
            jobs[field["output"]] = {"rule": block.split("rule ")[1].split(":")[0],
                                     "inputs": field.get("input", "").split(", "), "reason": field["reason"]}
    return jobs


def test_a_code_edit_reruns_exactly_the_jobs_that_import_it(finished, tmp_path):
    workdir = copy_finished(finished, tmp_path / "run")
    every_job = dry_run_jobs(workdir, "--forceall")
    edited = ["src/moe_rpo/routers/rpo.py", "src/moe_rpo/figures/style.py", "src/moe_rpo/experiments.py",
              "src/moe_rpo/toy/dilemma.py", "src/moe_rpo/figures/toy.py"]
    for name in edited:
        path = workdir / name
        path.write_text(path.read_text() + "\n# edited\n")
    scheduled = dry_run_jobs(workdir)
    importers = {out for out, job in every_job.items() if set(edited) & set(job["inputs"])}
    assert importers and importers <= set(scheduled)  # every job that imports an edited module reruns
    for out, job in scheduled.items():  # and any other job only because a job upstream of it does
        assert out in importers or job["reason"].startswith("Input files updated by another job"), job
    base = [job for job in scheduled.values() if job["rule"] == "base_model"]
    assert not base, base  # the dense base model imports no router
    other_routers = [out for out, job in scheduled.items() if job["rule"] in ("recovery_run", "train_run")
                     and "/standard_k1/" in out]
    assert not other_routers, other_routers  # a job of another router does not import rpo.py


def test_the_plugin_router_is_benchmarked_like_a_built_in_one(finished, tmp_path):
    """One config entry (config/test.yaml: routers.cosine, method plugin) gives the example package's router a
    row in every column, and its source files are the code inputs of exactly the jobs that build it."""
    import pandas as pd

    values = pd.read_csv(finished / "results/tables/lm_benchmark_values.csv").set_index("router")
    for column in ("toy_gap_to_optimum", "sim_accuracy", "sim_regret", "shakespeare_val_loss", "gini", "saturation"):
        assert values.loc["cosine", f"{column}_seeds"] > 0, column
    assert "<td>cosine</td>" in (finished / "results/report/lm_benchmark.html").read_text()
    jobs = dry_run_jobs(copy_finished(finished, tmp_path / "run"), "--forceall")
    building = {out: job["rule"] for out, job in jobs.items()
                if any(path.endswith("custom_router/cosine.py") for path in job["inputs"])}
    assert set(building.values()) == {"toy_benchmark_run", "recovery_run", "train_run"}
    # only its own jobs: a recovery or training job per setting and seed of its one method
    assert all("/cosine_k1/" in out for out, rule in building.items() if rule in ("train_run", "recovery_run"))
    assert not [out for out, rule in building.items() if rule == "recovery_run" and "/diff/" in out]  # not benchmarked


def test_benchmark_tables_fit_the_page_and_sort(finished):
    require_chromium()
    tables = sortable_tables(finished / "results/report/lm_benchmark.html")
    # quality, balance, routing, improvement: each one table, or split by columns into parts that fit the page
    assert len(tables) >= 4 and not [t for t in tables if t["overflows"]]
    for table in tables:  # sorted ascending by the first metric: numbers first, then "not run"
        numbers = [float(cell.split()[0]) for cell in table["sorted"] if cell[0].isdigit() or cell[0] == "-"]
        assert numbers == sorted(numbers) and table["sorted"][:len(numbers)] == [
            cell for cell in table["sorted"] if cell[0].isdigit() or cell[0] == "-"]


def test_make_clean_keeps_the_lm_runs(finished, tmp_path):
    """`make clean` removes toys, tables, figures and pages; the next run remakes those and no LM job."""
    workdir = copy_finished(finished, tmp_path / "run")
    assert subprocess.run(["make", "clean"], cwd=workdir, capture_output=True).returncode == 0
    assert not (workdir / "results" / "tables").exists() and (workdir / "results" / "lm" / "base" / "model.pt").is_file()
    result = snakemake(workdir, "-n")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "rule toy_run:" in result.stdout and "rule report:" in result.stdout
    for rule in ("base_model", "recovery_run", "recovery_design", "train_run", "reading_run", "corpus_gather"):
        assert f"rule {rule}:" not in result.stdout, rule


def readme_blocks(heading: str) -> dict[str, str]:
    """The python blocks of a section of docs/experiments.md, by the file their first line (a comment) names."""
    section = (ROOT / "docs/experiments.md").read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("\n```", 1)[0] for block in section.split("```python\n")[1:]]
    return {block.splitlines()[0].lstrip("# ").split(",")[0]: block for block in blocks}


def test_the_readme_adds_an_experiment_in_one_registry_entry(finished, tmp_path):
    """The docs' walk-through, run on a finished pipeline: the new experiment gets its rules, table,
    figure and page, and no job trains (its runs exist)."""
    workdir = copy_finished(finished, tmp_path / "run")
    blocks = readme_blocks("Adding an experiment")
    assert set(blocks) == {"src/moe_rpo/experiments.py", "src/moe_rpo/figures/shakespeare_k2.py"}
    registry = workdir / "src/moe_rpo/experiments.py"
    registry.write_text(registry.read_text() + "\n\n" + blocks["src/moe_rpo/experiments.py"])
    (workdir / "src/moe_rpo/figures/shakespeare_k2.py").write_text(blocks["src/moe_rpo/figures/shakespeare_k2.py"])
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    log = result.stdout + result.stderr
    for rule in ("tables_lm_shakespeare_k2", "figures_lm_shakespeare_k2", "report"):
        assert f"rule {rule}:" in log, rule
    for rule in ("train_run", "recovery_run", "toy_run", "base_model"):
        assert f"rule {rule}:" not in log, rule
    results = workdir / "results"
    summary = (results / "tables/lm_shakespeare_k2_summary.csv").read_text()
    assert "standard,2,2," in summary and "rpo" not in summary  # k=2 only, both seeds
    assert (results / "figures/lm_shakespeare_k2_val.png").stat().st_size > 1000
    page = (results / "report/lm_shakespeare_k2.html").read_text()
    assert "Shakespeare MoE: the k=2 runs" in page and "lm_shakespeare_k2_val.png" in page
    assert 'href="lm_shakespeare_k2.html"' in (results / "report/index.html").read_text()


def test_the_workflow_runs_from_another_directory(tmp_path):
    """`snakemake --directory`: results in that directory, code inputs and templates found in the checkout."""
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile",
                             str(ROOT / "config/test.yaml"), "--directory", str(tmp_path)],
                            cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "src/moe_rpo/cli.py" in result.stdout and "Missing input" not in result.stderr


def test_a_second_snakemake_on_the_same_directory_is_refused_while_the_first_runs(finished, tmp_path):
    """Two invocations on one directory: the second stops at once, naming the lock; the first finishes."""
    workdir = copy_finished(finished, tmp_path / "run")
    shutil.rmtree(workdir / "results" / "toy" / "dilemma")
    first = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "config/test.yaml"],
                             cwd=workdir, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    locks, deadline = workdir / ".snakemake" / "locks", time.time() + 120
    while not (locks.is_dir() and any(locks.iterdir())) and time.time() < deadline:
        time.sleep(0.1)
    second = snakemake(workdir)
    assert second.returncode != 0 and "cannot be locked" in second.stderr, second.stderr[-2000:]
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert (workdir / "results" / "toy" / "dilemma" / "run.json").is_file()


def test_the_snakemake_report_of_a_partial_run_names_what_is_missing(finished, tmp_path):
    """`snakemake --report` after a partial run: a report of what exists is no report of the run, so it stops
    with Snakemake's message naming a missing product."""
    workdir = copy_finished(finished, tmp_path / "run")
    missing = workdir / "results" / "figures" / "toy_dilemma_weights.png"
    missing.unlink()
    result = snakemake(workdir, "--report", str(tmp_path / "report.zip"))
    assert result.returncode != 0 and "toy_dilemma_weights.png" in result.stderr + result.stdout
    assert not (tmp_path / "report.zip").exists()
