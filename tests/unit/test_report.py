"""The HTML report: rendered from a small synthetic results tree, checked as text and in headless Chromium."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import markupsafe  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from browser import check_pages, require_chromium  # noqa: E402
from conftest import ROOT  # noqa: E402

from moe_rpo.config import validate  # noqa: E402
from moe_rpo.experiments import EXPERIMENTS  # noqa: E402

PAGES = list(EXPERIMENTS.values())
from moe_rpo.report.render import render_report  # noqa: E402

TEMPLATES = ROOT / "paper" / "templates"
SEEDS = [0, 1]
BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
def synthetic_claims() -> list[dict]:
    """Claims made by the real claim functions from small tables: one of each verdict, and a page's paper values."""
    import pandas as pd

    from moe_rpo.claims import dilemma_claims, shakespeare_moe_claims, under_readings

    thresholds = validate({})["claims"]
    dilemma = pd.DataFrame([{"method": m, "seed": seed, "steps": 2000, "final_distance": d,
                             "standard_reachable_distance": 0.2}
                            for m, d in [("standard", 0.3), ("standard_normalized", 0.3), ("rpo", 0.5)]
                            for seed in SEEDS])  # standard stalls (reproduced); RPO does not reach it (refuted)
    shakespeare = pd.DataFrame([{"method": m, "k": k, "seed": seed, "mean_train_loss": 2.0 + seed / 10, "train_loss": 1.5,
                                 "val_loss": 1.6, "generalization_gap": 0.1, "steps": 200, "tokens": 204800}
                                for m, k in [("standard", 1), ("standard", 2), ("em", 1), ("rpo", 1)] for seed in SEEDS])
    return ([{"experiment": "toy_dilemma", **c} for c in dilemma_claims(dilemma, thresholds)]
            + [{"experiment": "lm_shakespeare_moe", **c}  # judged again under one reading (claims.readings)
               for c in under_readings(shakespeare_moe_claims, shakespeare,
                                       shakespeare[shakespeare["method"] == "rpo"].assign(reading="wide_std"),
                                       thresholds)])


CLAIMS = synthetic_claims()


@pytest.fixture(scope="module")
def results(tmp_path_factory, config) -> Path:
    """A results tree with every file the report reads (figures, tables, claims, run records, benchmarks)."""
    root = tmp_path_factory.mktemp("results")
    (root / "figures").mkdir()
    (root / "tables").mkdir()
    for i, stem in enumerate(stem for page in PAGES for stem in page.figures):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1, 2], [0, i, 2 * i])
        for ext in ("png", "pdf"):
            fig.savefig(root / "figures" / f"{stem}.{ext}")
        plt.close(fig)
    for stem in (stem for page in PAGES for stem in page.shown):
        (root / "tables" / f"{stem}.csv").write_text("method,k,final_distance\nrpo,2,0.123456789\nstandard,2,\n")
    (root / "tables" / "lm_benchmark_improvement_values.csv").write_text(  # the benchmark's resolved count
        "metric,arm,reference,probability,low,high,seeds,reference_seeds,resolved\n"
        "toy_gap_to_optimum,rpo k=1,standard k=1,0.8,0.7,0.9,64,64,True\n"
        "sim_accuracy,rpo k=1,standard k=1,1.0,,,2,2,False\n")
    (root / "claims.json").write_text(json.dumps({"thresholds": {}, "claims": CLAIMS}))
    meta = {"source": "shakespeare", "tokenizer": "char", "vocab_size": 65, "documents": 783, "empty_documents": 3,
            "invalid_utf8_sequences": 0, "shards": 2,
            "splits": {"train": {"tokens": 4391006}, "val": {"tokens": 594875}}}
    for corpus in config["corpora"]:  # "tiny" and the default corpora, which a config's corpora extend
        (root / "data" / corpus).mkdir(parents=True)
        (root / "data" / corpus / "meta.json").write_text(json.dumps(meta))
    def seed_of(record):  # a toy's one job runs every seed: call it seed 0
        name = record.rsplit("/", 1)[1]
        return int(name.removeprefix("seed")) if name.startswith("seed") else 0

    jobs = {(job.record, job.key, seed_of(job.record)) for page in PAGES for job in page.jobs(config)}
    jobs = sorted(jobs) + [("lm/base/model", "lm_base/base_model", 0)]
    for record_stem, bench_stem, seed in jobs:
        run = {"seed": seed, "settings": {"steps": 200, "methods": ["standard", "rpo"]}, "records": [],
               "provenance": {"versions": {"numpy": "2.4.6", "jinja2": "3.1.6"}, "git_commit": "abc123def",
                              "git_dirty": seed == 1, "python": "3.11.7", "platform": "Linux-test",
                              "started": "2026-01-01T00:00:00+00:00", "runtime_s": 1.5}}
        if record_stem == "lm/base/model":
            run |= {"source": "pretrain", "parameters": 820224, "val_loss": 1.9712345,
                    "config": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "vocab_size": 65},
                    "settings": {"corpus": "tiny", "train": {"steps": 600, "batch_size": 32, "block_size": 128}}}
        if record_stem.startswith("toy/"):
            run["seeds"] = SEEDS  # a toy's one job runs every seed
        path = root / f"{record_stem}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run))
        bench = root / "benchmarks" / f"{bench_stem}.tsv"
        bench.parent.mkdir(parents=True, exist_ok=True)
        rss = "-" if seed else "399.50"
        row = [f"{4.71 + seed}", "0:00:04", rss, "773.48", "255.96", "321.98", "3.82", "0.44", "84.27", "4.46"]
        bench.write_text(BENCH_HEADER + "\t".join(row) + "\n")
    return root


@pytest.fixture(scope="module")
def config() -> dict:
    return validate({"seeds": SEEDS, "report": {"title": "Synthetic replication report"},
                     "corpora": {"tiny": {"source": "shakespeare", "tokenizer": "char"}},
                     "base_model": {"corpus": "tiny"},
                     "recovery": {"corpus": "tiny", "seeds": SEEDS, "sim_scales": [0.3]},
                     "shakespeare_moe": {"corpus": "tiny", "seeds": SEEDS, "methods": [{"router": "standard", "k": 2},
                                                                                       {"router": "em", "k": 1},
                                                                                       {"router": "standard", "k": 1},
                                                                                       {"router": "rpo", "k": 1},
                                                                                       {"router": "hash", "k": 1}]},
                     "pretraining": {"corpus": "tiny", "seeds": [0], "methods": [{"router": "dense", "k": 1},
                                                                                  {"router": "standard", "k": 2},
                                                                                  {"router": "rpo", "k": 2}]},
                     "routerless": {"fixed": [{"router": "hash", "k": 1}], "learned": [{"router": "standard", "k": 1}]},
                     "benchmark": {"recovery": {"settings": ["diff"]}}})


@pytest.fixture(scope="module")
def rendered(results, config) -> list[Path]:
    return render_report(results, results / "report", config, TEMPLATES)


def test_pages_written(rendered, results):
    expected = [results / "report" / "index.html"] + [results / "report" / f"{p.stem}.html" for p in PAGES]
    assert rendered == expected
    assert all(path.is_file() for path in rendered)
    assert (results / "report" / "style.css").is_file()


def test_index_lists_every_claim_and_page(rendered):
    index = rendered[0].read_text()
    assert "Synthetic replication report" in index
    for claim in CLAIMS:
        assert claim["id"] in index and str(markupsafe.escape(claim["reason"])) in index
        assert f'href="{claim["experiment"]}.html#{claim["id"]}"' in index
    for verdict, count in [("reproduced", 1), ("refuted", 1), ("inconclusive", 2)]:
        assert f'<span class="badge {verdict}">{verdict}</span>' in index
        assert f'<span class="badge {verdict}">{count} {verdict}</span>' in index
    assert "RPO final distance: 0.5 [0.5, 0.5], n=2 (claim: &lt; 0.05)" in index
    for page in PAGES:
        assert f'href="{page.stem}.html"' in index
    assert "<td>tiny</td>" in index and "4,391,006" in index and "594,875" in index  # from meta.json


def test_a_claim_shows_its_verdict_reason_and_the_papers_numbers_beside_ours(rendered):
    page = next(path for path in rendered if path.name == "lm_shakespeare_moe.html").read_text()
    claim = page[page.index('id="lm_shakespeare_rpo_trains_fastest"'):page.index('id="lm_shakespeare_rpo_overfits_most"')]
    assert '<span class="badge inconclusive">inconclusive</span>' in claim
    assert "below the paper&#39;s regime: 200 training steps, the paper&#39;s effect needs 2000" in claim
    assert "read off the plot" in claim and "not reached by this run" in claim
    assert "<th>RPO final training loss</th><td>0.11</td><td>1.5</td>" in claim  # the paper's, then ours
    assert "top-1 minus RPO mean training loss: 0 [0, 0], n=2 (claim: &gt; 0): refuted" in claim
    assert "(95% interval: paired t over seeds)" in claim


def test_experiment_page_shows_files_numbers(rendered):
    page = rendered[1].read_text()  # toy_routing
    assert PAGES[0].title in page and "No claim is checked on this page." in page  # its claims are not in CLAIMS
    assert "toy_dilemma_rpo_free_weights" not in page
    for stem in PAGES[0].figures:
        assert f'src="../figures/{stem}.png"' in page and f'href="../figures/{stem}.pdf"' in page
    assert "0.1235" in page and "0.123456789" not in page  # tables: 4 significant digits
    assert "<td>4.71</td>" in page and "4.71 s" in page  # the benchmark's wall time (one job: every seed)
    assert "<td>399.5</td>" in page  # max_rss, and "-" shown as a dash
    budget = re.search(r"Budget.</strong> (.*?)</p>", page).group(1)
    assert budget.startswith("1 jobs, 0.1 minutes of job time") and "2 seeds (0, 1); a claim needs at least 2" in budget
    assert "steps: 200" in page and "methods: [standard, rpo]" in page
    assert "abc123def" in page and "dirty" not in page  # its one job is clean (seed 1 stands for a dirty tree)
    assert "numpy" in page and "2.4.6" in page and "Linux-test" in page and "3.11.7" in page
    assert "Base model" not in page


def test_a_claim_judged_under_readings_shows_its_robustness_table(rendered):
    page = next(path for path in rendered if path.name == "lm_shakespeare_moe.html").read_text()
    assert "<dt>Readings</dt>" in page and "under every reading tried (2, the runs as configured included)" in page
    assert "<th>wide_std</th>" in page and "<th>as run</th>" in page


def test_the_benchmark_page_counts_the_differences_it_resolves(rendered):
    page = next(path for path in rendered if path.name == "lm_benchmark.html").read_text()
    assert "1 of 1 pairwise differences resolved (1 in the arm&#39;s favour); 1 more have too few seeds" in page


def test_lm_page_shows_the_base_model_and_every_job(rendered):
    page = next(path for path in rendered if path.name == "lm_recovery.html").read_text()
    assert "Base model" in page and "820,224" in page and "1.971" in page and "pretrained here" in page
    assert "smaller scale" in page  # the default config says at what scale the page was made
    assert "<td>sim0.3 standard_k1 seed 1</td>" in page and "<td>diff rpo_k1 seed 0</td>" in page
    assert "dirty" in page  # the seed-1 records stand for runs from a dirty tree


@pytest.mark.parametrize("missing", ["claims.json", "toy/dilemma/run.json", "benchmarks/toy_barrier/run.tsv",
                                     "figures/toy_routing_trajectories.pdf", "tables/toy_collapse_summary.csv",
                                     "data/tiny/meta.json", "lm/recovery/sim0.3/standard_k1/seed1.json", "lm/base/model.json",
                                     "benchmarks/lm_recovery/diff/standard_k1/seed0.tsv"])
def test_missing_input_names_the_file(results, config, tmp_path, missing):
    copy = tmp_path / "results"
    shutil.copytree(results, copy, ignore=shutil.ignore_patterns("report"))
    (copy / missing).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(copy / missing))):
        render_report(copy, copy / "report", config, TEMPLATES)


def test_pages_work_in_browser(rendered):
    require_chromium()
    assert check_pages(rendered) == []


def test_browser_check_finds_broken_pages(tmp_path):
    require_chromium()
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img src="missing.png"><a href="nowhere.html">x</a></body></html>')
    problems = check_pages([page])
    assert any("broken image: missing.png" in p for p in problems), problems
    assert any("link to missing file" in p and "nowhere.html" in p for p in problems), problems


def test_a_wide_summary_is_shown_compact_and_split_into_parts_that_fit_the_page():
    import pandas as pd

    from moe_rpo.report.render import ROW_CHARS, _chars, column_chunks, compact_summary

    stats = {f"{metric}_{stat}": [1.234567, float("nan")] if stat != "std" else [0.0123, float("nan")]
             for metric in [f"metric_number_{i}" for i in range(12)] for stat in ("mean", "std", "median", "min", "max")}
    df = pd.DataFrame({"method": ["rpo", "standard"], "k": [1, 2], "seeds": [3, 1], **stats})
    shown, labels = compact_summary(df)
    assert labels == ["method", "k", "seeds"] and list(shown["metric_number_0"]) == ["1.235 ± 0.012", "–"]
    parts = column_chunks(shown, labels)
    assert len(parts) > 1 and all(list(part.columns[:3]) == labels for part in parts)
    assert all(sum(_chars(part, column) for column in part.columns) <= ROW_CHARS for part in parts)
    assert [c for part in parts for c in part.columns if c not in labels] == [f"metric_number_{i}" for i in range(12)]
