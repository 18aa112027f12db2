"""The cluster path for real: the smoke config through the SLURM profile on a local single-node cluster
(with a fake GPU), compared with a local run of the same config."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_cluster import PARTITION, Cluster, available
from conftest import ENV, copy_workflow

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
COMPARED = ["results/claims.json", "results/tables/toy_routing_seeds.csv", "results/tables/toy_barrier_seeds.csv",
            "results/tables/lm_recovery_seeds.csv", "results/tables/lm_shakespeare_moe_seeds.csv",
            "results/tables/lm_benchmark.csv", "results/data/shakespeare/train.bin",
            "results/data/shakespeare_char/val.bin", "results/lm/base/model.pt"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = available()
    if reason:
        if os.environ.get("REQUIRE_SLURM") == "1":
            pytest.fail(f"REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def slurm_profile(workdir: Path) -> None:
    """The shipped SLURM profile with its partition placeholders pointed at the local cluster, and GPU jobs
    sized to its node (one CPU per GPU instead of eight)."""
    profile = workdir / "profiles" / "slurm" / "config.yaml"
    text = profile.read_text()
    assert "<cpu-partition>" in text and "<gpu-partition>" in text and "cpus_per_gpu: 8" in text
    profile.write_text(text.replace("<cpu-partition>", PARTITION).replace("<gpu-partition>", PARTITION)
                       .replace("cpus_per_gpu: 8", "cpus_per_gpu: 1"))


def run(workdir: Path, *args: str, env=ENV) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/test.yaml", *args],
                          cwd=workdir, env=env, capture_output=True, text=True)


def test_smoke_run_through_slurm_equals_a_local_run(cluster, finished, tmp_path):
    local = finished  # the shared local run of the same config
    remote = copy_workflow(_mkdir(tmp_path / "slurm"))
    slurm_profile(remote)
    done = run(remote, "--workflow-profile", "profiles/slurm", "--jobs", "4",
               "--slurm-init-seconds-before-status-checks", "2", env={**ENV, "SLURM_CONF": str(cluster.conf)})
    assert done.returncode == 0, done.stderr[-5000:]

    # every job went through sbatch: the controller still knows them (MinJobAge), with their rule and GPUs
    jobs = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, env=cluster.env).stdout
    by_rule = {}
    for line in jobs.splitlines():
        rule = next((f for f in line.split() if f.startswith("Comment=rule_")), "Comment=?")[len("Comment="):]
        by_rule.setdefault(rule.split("_wildcards")[0], []).append("gres:gpu" in line)
    assert len(by_rule["rule_recovery_run"]) == 6 and len(by_rule["rule_corpus_shard"]) == 4
    assert all(by_rule["rule_recovery_run"]), "GPU rules must ask SLURM for a GPU"
    assert all(by_rule["rule_base_model"]) and all(by_rule["rule_train_run"]) and all(by_rule["rule_benchmark_recovery_run"])
    assert not any(by_rule["rule_toy_run"]), "CPU rules must not ask for a GPU"
    for path in COMPARED:
        assert (remote / path).read_bytes() == (local / path).read_bytes(), f"{path} differs from the local run"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
