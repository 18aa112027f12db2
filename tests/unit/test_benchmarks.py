"""The GPU-hours benchmark (behind docs/cluster.md's cost advice) runs and counts the jobs the pipeline runs; the
GPU check script and the MoE layer benchmark run (on the CPU here)."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from moe_rpo import config as cfg
from moe_rpo import schema, sections, values
from moe_rpo.data.prepare import prepare_corpus
from moe_rpo.experiments import recovery_jobs, training_jobs
from moe_rpo.models import GPT, GPTConfig, save_gpt

CONFIGS = [str(ROOT / "config/config.yaml"), str(ROOT / "config/test.yaml")]


def test_gpu_hours_counts_the_pipelines_jobs(tmp_path):
    out = tmp_path / "hours.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_hours.py"), "--config", *CONFIGS,
                    "--match", "pretraining dense", "recovery_run rpo_k1", "recovery_run hash_k1", "recovery_layers_run", "--steps", "1", "2",
                    "--json", str(out)],
                   check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    config = cfg.load(*CONFIGS)
    rows = json.loads(out.read_text())["rows"]
    jobs = {(row["rule"], row["job"]): row["jobs"] for row in rows}
    # rpo has a job in every setting and seed; hash, a benchmark method only, in the benchmark's settings
    benchmark_settings = config["benchmark"]["recovery"]["settings"]
    runs = recovery_jobs({setting: sections.recovery_methods(config, setting)
                          for setting in sections.recovery_settings(config["recovery"])}, config["recovery"]["seeds"])
    expected = {("recovery_run", "rpo_k1"): len([job for job in runs if "/rpo_k1/" in job.record]),
                ("recovery_run", "hash_k1"): len([job for job in runs if "/hash_k1/" in job.record])}
    assert expected[("recovery_run", "hash_k1")] == len(benchmark_settings) * len(config["recovery"]["seeds"])
    sweep = config["recovery"]["layer_sweep"]
    expected |= {("recovery_layers_run", f"layers {label} {values.Arm.of(m).slug}"): len(sweep["settings"]) * len(config["recovery"]["seeds"])
                 for label in sections.layer_sweep_sets(config["recovery"]) for m in sweep["methods"]}
    dense = [m for m in config["pretraining"]["methods"] if m["router"] == values.DENSE]
    expected[("train_run", "pretraining dense")] = len(training_jobs("pretraining", dense, config["pretraining"]["seeds"]))
    assert jobs == expected  # (timings at this toy scale are noise: not checked)
    assert "| `recovery_run` |" in gpu_section_of(tmp_path, "gpu_hours_cpu.json", json.loads(out.read_text()))


def test_moe_layer_benchmark_prints_each_ratio():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/moe_layer.py"), "--threads", "1", "--n-embd", "16",
                             "--n-layer", "1", "--n-head", "2", "--vocab-size", "64", "--block-size", "16", "--batch", "2",
                             "--gpt-batch", "2", "--experts", "4", "8", "--ks", "1", "2", "--warmup", "1", "--repeats", "1"],
                            check=True, capture_output=True, text=True)
    layer_rows = [line.split() for line in result.stdout.splitlines() if line[:6].strip().isdigit()]
    assert [row[:2] for row in layer_rows] == [["4", "1"], ["4", "2"], ["8", "1"], ["8", "2"]], result.stdout
    assert all(float(ratio) > 0 for row in layer_rows for ratio in row[2:])
    for k in (1, 2):
        assert f"k={k} ratio MoE / iso-active dense tokens/s" in result.stdout, result.stdout


def test_gpu_check_runs_and_finds_training_deterministic_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--small", "--device", "cpu",
                             "--steps", "3", "--repeats", "1", "--no-compile", "--json", str(out)],
                            check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert "weights bit-equal: True" in result.stdout, result.stdout
    check = json.loads(out.read_text())
    assert check["determinism"] == {"steps": 3, "bit_equal": True, "error": None}
    assert check["routers_strict"] and set(check["routers_strict"].values()) == {None}
    assert check["routers_host_syncs"] == dict.fromkeys(check["routers_strict"])  # counted on a GPU only
    assert set(check["time_split"]["ms_per_step"]) == {"moe k=1", "moe k=1, deterministic kernels off",
                                                       "moe k=1, biases by indexing", "dense iso-active k=1"}
    assert check["peak_tflops"]["datasheet_bf16"] is None and check["peak_tflops"]["measured_matmul"] > 0
    models = {(row["size"], row["model"]) for row in check["speed"]}
    assert models == {("shakespeare_moe", "moe k=1"), ("shakespeare_moe", "dense iso-active k=1"),
                      *{("gpt2_124m", f"{kind} k={k}") for kind in ("moe", "dense iso-active") for k in (1, 2)}}
    for row in check["speed"]:
        assert 0 < row["mfu"] < 1 and row["tokens_per_s"] > 0 and row["active_params_m"] <= row["params_m"]
        if row["model"].startswith("moe"):  # the dense model of equal active parameters: the router's more
            assert row["active_params_m"] > dict(((r["size"], r["model"]), r) for r in check["speed"])[
                (row["size"], row["model"].replace("moe", "dense iso-active"))]["active_params_m"]
    for size, breaks in check["graph_breaks"].items():  # dense: one graph; the CPU's loop kernel: host reads
        assert {name for name, count in breaks.items() if count} == {name for name in breaks if name.startswith("moe")}
    assert check["skipped"] == []


# nanoGPT's interface (model.py: GPTConfig, GPT(config) -> (logits, loss), configure_optimizers), standing in for a
# checkout (none can be fetched here); NANOGPT_MODEL=<checkout>/model.py runs the real one in the test below it
NANOGPT_STAND_IN = """
from dataclasses import dataclass
import torch
from moe_rpo.models import GPT as Ours, GPTConfig as OurConfig

@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True

class GPT(Ours):
    def __init__(self, config):
        super().__init__(OurConfig(**vars(config)))

    def forward(self, idx, targets=None):
        out = super().forward(idx, targets)
        return out.logits, out.loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        print("using fused AdamW: False")
        return torch.optim.AdamW(self.parameters(), lr=learning_rate, betas=betas, weight_decay=weight_decay)
"""


def run_peer(tmp_path, model_py, *options):
    out = tmp_path / "peer.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/nanogpt_peer.py"), "--nanogpt", str(model_py),
                             "--small", "--device", "cpu", "--repeats", "1", "--json", str(out), *options],
                            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return result, (json.loads(out.read_text()) if out.exists() else None)


def check_peer_rows(peer, model_py, compiled):
    assert peer["skipped"] == [] and peer["nanogpt_model_sha256"] == hashlib.sha256(model_py.read_bytes()).hexdigest()
    rows = {(row["part"], row["model"], row["compile"]): row for row in peer["rows"]}
    mode = "default" if compiled else "eager"
    assert {name for part, name, compile in rows if part == "dense" and compile == mode} >= {
        "nanoGPT", "ours", "ours, deterministic kernels off"}
    assert {name for part, name, _ in rows if part == "moe"} == {
        f"{kind} k={k}" for kind in ("moe", "dense iso-active") for k in (1, 2)}
    for (part, name, _), row in rows.items():
        assert 0 < row["mfu"] < 1 and row["tokens_per_s"] > 0, row
        assert row["deterministic_kernels"] == (name.startswith(("ours", "moe", "dense")) and "off" not in name
                                                or name.endswith("deterministic kernels on")), row
        if part == "dense" and name != "nanoGPT":  # each against nanoGPT, measured in the same part
            assert row["over"] == "nanoGPT" and row["ratio"] > 0
        if name.startswith("moe"):
            assert row["over"] == name.replace("moe", "dense iso-active")
            assert row["active_params_m"] > rows[part, row["over"], row["compile"]]["active_params_m"]


def test_nanogpt_peer_measures_both_side_by_side_in_every_part(tmp_path):
    model_py = tmp_path / "model.py"
    model_py.write_text(NANOGPT_STAND_IN)
    result, peer = run_peer(tmp_path, model_py, "--no-compile")
    assert result.returncode == 0, result.stderr
    check_peer_rows(peer, model_py, compiled=False)
    page = gpu_section_of(tmp_path, "nanogpt_peer_cpu.json", peer)
    assert "| dense | ours, vocabulary unpadded | eager | yes |" in page and "| moe | moe k=2 | eager | yes |" in page
    assert {row["model"] for row in peer["rows"] if row["part"] == "dense"} == {
        "nanoGPT", "ours", "ours, deterministic kernels off", "ours, vocabulary unpadded", "ours, AdamW unfused",
        "nanoGPT, deterministic kernels on"}
    assert set(peer["top_ops"]) == {"nanoGPT", "ours"} and all(ms > 0 for ops in peer["top_ops"].values()
                                                              for _, ms in ops)
    # torch.compile'd steps of both, traced by dynamo; the eager backend skips inductor's C++ code generation on the
    # CPU (25 s, and not the code a GPU runs)
    compiled, peer = run_peer(tmp_path, model_py, "--parts", "1", "--compile-backend", "eager")
    assert compiled.returncode == 0, compiled.stderr
    assert {(row["model"], row["compile"]) for row in peer["rows"]} == {
        (name, "default") for name in ("nanoGPT", "ours", "ours, deterministic kernels off")}
    assert "Compiled with torch.compile's `eager` backend, not inductor." in gpu_section_of(tmp_path, "nanogpt_peer_cpu.json", peer)


def test_nanogpt_peer_names_a_path_that_is_no_nanogpt_model(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import nanogpt_peer

    (tmp_path / "other.py").write_text("x = 1\n")
    for model_py, words in ((tmp_path / "missing.py", "no such file"), (tmp_path / "other.py", "defines no GPT")):
        with pytest.raises(SystemExit, match=f"--nanogpt {model_py}: {words}"):
            nanogpt_peer.load_nanogpt(model_py)


@pytest.mark.skipif(not os.environ.get("NANOGPT_MODEL"), reason="set NANOGPT_MODEL to a nanoGPT checkout's model.py")
def test_nanogpt_peer_with_the_real_nanogpt(tmp_path):
    model_py = Path(os.environ["NANOGPT_MODEL"])
    result, peer = run_peer(tmp_path, model_py, "--parts", "1", "2", "4")
    assert result.returncode == 0, result.stderr
    check_peer_rows(peer, model_py, compiled=True)


def test_profile_jobs_splits_a_jobs_time():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/profile_jobs.py"), "--config", *CONFIGS,
                             "--methods", "standard_k1", "--profile-steps", "2"],
                            check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    steps = cfg.load(*CONFIGS)["recovery"]["train"]["steps"]
    for part in ("import torch", "recovery: oracle", f"recovery standard_k1: {steps} steps", "shakespeare standard_k1",
                 "torch.profiler", "aten::"):
        assert part in result.stdout, (part, result.stdout)


def test_router_gradients_measures_each_group_against_the_clip(tmp_path):
    spec = schema.validate_definition({"source": "shakespeare", "tokenizer": "char", "max_documents": 20,
                                    "val_fraction": 0.3}, "corpus_spec")
    meta = prepare_corpus(spec, tmp_path / "corpus", shards=1)
    save_gpt(GPT(GPTConfig(vocab_size=meta["vocab_size"], n_layer=2, n_head=2, n_embd=16, block_size=32)),
             tmp_path / "base.pt")
    out = tmp_path / "gradients.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/router_gradients.py"), "--base", str(tmp_path / "base.pt"),
                    "--corpus-dir", str(tmp_path / "corpus"), "--config", *CONFIGS, "--methods", "standard_k1",
                    "rpo_k1", "--settings", "sim0.3", "--layers", "0", "--batches", "1", "--draws", "3",
                    "--json", str(out)], check=True, capture_output=True, text=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    rows = {(row["method"], row["baseline"]): row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {("standard_k1", "none"), ("rpo_k1", "batch_mean"), ("rpo_k1", "greedy")}
    standard, rpo = rows["standard_k1", "none"], rows["rpo_k1", "batch_mean"]
    assert standard["snr"] == {"gate": None} and standard["advantage_std"] is None  # deterministic: no draw noise
    assert set(rpo["grad_norm"]) == {"gate", "weight_policy"} and rpo["snr"]["gate"] > 0
    assert rpo["total_norm"] ** 2 == pytest.approx(sum(n ** 2 for n in rpo["grad_norm"].values()), rel=0.2)
    assert 0 <= rpo["clipped_share"] <= 1 and rpo["advantage_std"] > 0


def test_the_performance_page_is_rendered_from_the_measured_files():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import performance

    page = performance.page()
    assert (ROOT / "docs" / "performance.md").read_text() == page
    for name in ("claims_default_cpu.json", "toy_seeds_cpu.json", "gpu_check_h200.json", "recovery_jobs_cpu.json"):
        measured = json.loads((ROOT / "benchmarks/measured" / name).read_text())
        assert measured["date"] in page


def test_performance_tables_say_when_and_where_they_were_measured(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import performance

    before = {"what": "the version before", "runs_s": [420.0, 480.0], "passed": 9}
    (tmp_path / performance.TESTS).write_text(json.dumps(performance.record_tests([400.0, 440.0], 10, "a note",
                                                                                  before)))
    page = performance.page(tmp_path)
    assert "`CI=true bash .ci/run` on a clean clone, measured" in page
    assert "10 tests passed in 7.0 minutes on average, runs of 6.7 and 7.3 (set-up" in page
    assert ("one of the version before (alternating which went first): 9 tests in 7.5 minutes on average, runs of 7.0 "
            "and 8.0.") in page
    (tmp_path / performance.TESTS).write_text(json.dumps(performance.record_tests([400.0], 10, "a note")))
    assert "10 tests passed in 6.7 minutes (set-up included; a note)." in performance.page(tmp_path)
    assert "## Whole runs" in page and "## One GPU" not in page  # no GPU measurement there: no GPU table


def test_run_times_reads_each_rules_jobs_from_a_snakemake_log():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import run_times

    log = "\n".join(["[Fri Dec  4 18:00:00 2026]", "rule base_model:", "    jobid: 3", "",
                     "[Fri Dec  4 18:00:30 2026]", "localrule toy_run:", "    jobid: 4", "",
                     "[Fri Dec  4 18:01:30 2026]", "Finished jobid: 4 (Rule: toy_run)",
                     "[Fri Dec  4 18:03:00 2026]", "Finished jobid: 3 (Rule: base_model)",
                     "[Fri Dec  4 18:03:00 2026]", "localrule toy_run:", "    jobid: 5"])
    table = run_times.table(run_times.job_times(log))
    assert "| `base_model` | 1 | 3.0 | 0.0 | 3.0 |" in table
    assert "| `toy_run` | 2 | 1.0 | 0.5 | 1.5 |" in table  # one job still running: counted, not timed
    assert "| all | 3 | 4.0 | 0.0 | 3.0 |" in table and "1 jobs did not finish." in table


def test_toy_seeds_benchmark_times_both_job_designs(tmp_path):
    out = tmp_path / "toy_seeds_cpu.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/toy_seeds.py"), "--experiments", "barrier", "--few", "1",
                    "--many", "4", "--steps", "20", "--json", str(out)], check=True, capture_output=True, text=True)
    record = json.loads(out.read_text())
    assert record["rows"][0]["experiment"] == "barrier" and record["rows"][0]["seeds_per_job"] == 4
    assert len(record["rows"][0]["one_job_per_seed_s"]) == 1 and record["many_total_s"] > 0
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import performance

    assert "| barrier | 1 |" in "\n".join(performance.toy_seeds_section(tmp_path))  # reads toy_seeds_cpu.json
    assert {"machine", "date", "torch"} <= set(record)


def test_a_runs_claims_are_kept_with_its_job_table_and_rendered(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import verdicts

    results = tmp_path / "results"
    for name, seconds in (("toy_x/run", 30.0), ("lm_y/seed0", 90.0)):
        (results / "benchmarks" / name).parent.mkdir(parents=True, exist_ok=True)
        (results / "benchmarks" / f"{name}.tsv").write_text(f"s\th:m:s\n{seconds}\t0:00:30\n")
    claim = {"id": "c1", "claim": "A claim.", "verdict": "inconclusive", "reason": "the interval contains 0.8",
             "to_decide": "about 40 seeds (`toy.routing.seeds`)",
             "comparisons": [{"label": "x", "value": 0.8, "low": 0.7, "high": 0.9, "n": 3, "mde": 0.2,
                              "seeds_to_decide": 40}]}
    (results / "claims.json").write_text(json.dumps({"thresholds": {}, "claims": [claim]}))
    (results / "tables").mkdir()
    (results / "tables" / "lm_benchmark_improvement_values.csv").write_text(
        "metric,arm,reference,probability,low,high,seeds,reference_seeds,resolved\n"
        "toy,rpo k=1,standard k=1,0.8,0.7,0.9,64,64,True\nsim,rpo k=1,standard k=1,1.0,,,3,3,False\n")
    kept = verdicts.record(results, "make run", 300.0)
    assert (kept["jobs"], kept["job_s"], kept["longest_job_s"], kept["seed_job_s"]) == (2, 120.0, 90.0, 90.0)
    assert verdicts.on_cores(kept, 16) == 90.0  # never below the longest job
    measured = tmp_path / "measured"
    measured.mkdir()
    (measured / "claims_default_cpu.json").write_text(json.dumps(kept))
    page = verdicts.page(measured)
    assert "0 reproduced, 0 refuted, 1 inconclusive of 1 claims" in page
    assert "- `c1`: about 40 seeds (`toy.routing.seeds`). Why undecided: the interval contains 0.8" in page
    assert "resolves 1 of its 1 pairwise differences that have an interval (1 in the arm's favour; 1 more" in page


def test_the_verdicts_page_is_rendered_from_the_measured_claims():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import verdicts

    assert (ROOT / "docs" / "verdicts.md").read_text() == verdicts.page()


def test_paper_dag_runs_a_job_of_every_gpu_rule_through_snakemake(tmp_path):
    """The paper configuration's GPU rules, one job each, at a tiny size on the CPU: its Hub corpora read from local
    JSON-lines files through `datasets`, its Hub GPT-2 from a local `transformers` directory."""
    out = tmp_path / "dag.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/paper_dag.py"), "--workdir", str(tmp_path / "run"),
                             "--tiny", "--device", "cpu", "--one-per-rule", "--steps", "2", "--cores", "2", "--json",
                             str(out)], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    dag = json.loads(out.read_text())
    gpu_rules = {"base_model", "recovery_run", "recovery_layers_run", "recovery_design", "train_run"}  # reading_run:
    assert set(dag["jobs_in_config"]) == gpu_rules  # claims.readings only (config/regime.yaml)
    assert dag["jobs_in_config"]["recovery_run"] > dag["jobs_in_config"]["recovery_layers_run"] > 1
    assert {rule: row["jobs"] for rule, row in dag["rules"].items()} == dict.fromkeys(gpu_rules, 1)
    assert all(seconds > 0 for row in dag["rules"].values() for seconds in row["job_s"]) and dag["device"] == "CPU"
    results = tmp_path / "run" / "results"
    base = json.loads((results / "lm/base/model.json").read_text())
    assert base["source"] == "huggingface" and base["settings"]["hf_name"] == str(tmp_path / "run" / "gpt2")
    for corpus in ("openwebtext", "tinystories"):
        meta = json.loads((results / "data" / corpus / "meta.json").read_text())
        assert meta["spec"]["dataset"] == "json" and meta["documents"] == 783  # every Shakespeare scene
    page = gpu_section_of(tmp_path, "paper_dag_cpu.json", dag)
    assert "one job of each GPU rule" in page and "| `recovery_run` | " in page


def gpu_section_of(tmp_path, name, measured) -> str:
    """docs/performance.md's GPU section with one measurement kept under `name`."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import performance

    kept = tmp_path / "measured"
    kept.mkdir(exist_ok=True)
    (kept / name).write_text(json.dumps(measured))
    page = "\n".join(performance.gpu_section(kept))
    assert f"Measured {measured['date']} (`{name}`)" in page
    return page
