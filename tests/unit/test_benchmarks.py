"""The GPU-hours benchmark (the source of the README's cost table) runs and counts the jobs the pipeline runs;
the GPU check script runs (on the CPU here)."""
import json
import os
import subprocess
import sys

from moe_rpo import config as cfg
from moe_rpo.experiments import recovery_jobs, training_jobs
from conftest import ROOT

CONFIGS = [str(ROOT / "config/config.yaml"), str(ROOT / "config/test.yaml")]


def test_gpu_hours_counts_the_pipelines_jobs(tmp_path):
    out = tmp_path / "hours.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_hours.py"), "--config", *CONFIGS,
                    "--match", "pretraining dense", "recovery_run rpo_k1", "recovery_run zloss_k1", "--steps", "1", "2",
                    "--json", str(out)],
                   check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    config = cfg.load(*CONFIGS)
    rows = json.loads(out.read_text())["rows"]
    jobs = {(row["rule"], row["job"]): row["jobs"] for row in rows}
    # rpo runs in every recovery job; zloss, a benchmark method only, in the jobs of the benchmark's settings
    benchmark_settings = config["benchmark"]["recovery"]["settings"]
    runs = recovery_jobs(list(cfg.recovery_settings(config["recovery"])), config["recovery"]["seeds"])
    expected = {("recovery_run", "rpo_k1"): len(runs),
                ("recovery_run", "zloss_k1"): len([job for job in runs if job.record.split("/")[-2] in benchmark_settings])}
    dense = [m for m in config["pretraining"]["methods"] if m["router"] == cfg.DENSE]
    expected[("train_run", "pretraining dense")] = len(training_jobs("pretraining", dense, config["pretraining"]["seeds"]))
    assert jobs == expected  # (timings at this toy scale are noise: not checked)


def test_gpu_check_runs_and_finds_training_deterministic_on_the_cpu():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--small", "--device", "cpu",
                             "--steps", "3", "--repeats", "1"],
                            check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert "weights bit-equal: True" in result.stdout, result.stdout
    assert "op without a deterministic kernel: (none)" in result.stdout, result.stdout
    assert "k=2: loop" in result.stdout and "iso-active dense" in result.stdout


def test_profile_jobs_splits_a_jobs_time():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/profile_jobs.py"), "--config", *CONFIGS,
                             "--methods", "standard_k1", "--profile-steps", "2"],
                            check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    for part in ("import torch", "recovery: oracle", "recovery standard_k1: 10 steps", "shakespeare standard_k1",
                 "torch.profiler", "aten::"):
        assert part in result.stdout, (part, result.stdout)
