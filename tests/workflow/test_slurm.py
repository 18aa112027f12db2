"""The cluster path for real: one job of every kind of the smoke config through the SLURM profile on a local
single-node cluster (with fake GPUs), compared with a local run of the same jobs."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ENV, copy_workflow
from slurm_cluster import PARTITION, Cluster, available

from moe_rpo import paths
from moe_rpo.io import read_json

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
# A job of each kind (a toy on the CPU; the base model and a training run on the GPU partition) and the corpora
# they need: what the cluster path can get wrong, without the whole DAG. A recovery job would add a stage to
# the chain (it waits for the base model, and the executor polls SLURM ever more slowly: 1, 11, 21 s...) and
# nothing new: it is launched like the other GPU rules (its GPU request: tests/unit/test_code_inputs.py).
TARGETS = [paths.record(paths.TOY_RUN, experiment="routing"),
           paths.record(paths.TRAIN_RUN, training="shakespeare_moe", method="rpo_k1", seed=0),
           paths.record(paths.BASE_MODEL),
           paths.result(paths.CORPUS + "/meta.json", corpus="shakespeare")]
COMPARED = ["results/lm/base/model.pt", "results/data/shakespeare/train.bin", "results/data/shakespeare_char/val.bin"]


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
    sized to its node (one CPU per GPU instead of eight, 2 GB instead of 16), so that they run side by side."""
    profile = workdir / "profiles" / "slurm" / "config.yaml"
    text = profile.read_text()
    assert "<cpu-partition>" in text and "<gpu-partition>" in text and "cpus_per_gpu: 8" in text
    assert "mem_mb: 16000" in text
    profile.write_text(text.replace("<cpu-partition>", PARTITION).replace("<gpu-partition>", PARTITION)
                       .replace("cpus_per_gpu: 8", "cpus_per_gpu: 1").replace("mem_mb: 16000", "mem_mb: 2000"))


def run(workdir: Path, *args: str, env=ENV) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/test.yaml", *args],
                          cwd=workdir, env=env, capture_output=True, text=True)


def test_jobs_through_slurm_equal_a_local_run(cluster, tmp_path):
    """Its own local run of the same jobs rather than the shared pipeline run: it need not wait for that run, so it
    starts at once on the other worker, and its SLURM run (mostly waiting on the controller's polls) leaves the
    cores to that run."""
    local = copy_workflow(_mkdir(tmp_path / "local"))
    made = run(local, "--cores", "2", *TARGETS)  # targets last: --configfile takes a list
    assert made.returncode == 0, made.stderr[-5000:]
    remote = copy_workflow(_mkdir(tmp_path / "slurm"))
    slurm_profile(remote)
    done = run(remote, "--workflow-profile", "profiles/slurm", "--jobs", "4", "--seconds-between-status-checks", "1",
               "--slurm-init-seconds-before-status-checks", "1", *TARGETS,  # targets last: --configfile takes a list
               env={**ENV, "SLURM_CONF": str(cluster.conf)})
    assert done.returncode == 0, done.stderr[-5000:]

    # every job went through sbatch: the controller still knows them (MinJobAge), with their rule and GPUs
    jobs = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, env=cluster.env).stdout
    by_rule = {}
    for line in jobs.splitlines():
        rule = next((f for f in line.split() if f.startswith("Comment=rule_")), "Comment=?")[len("Comment="):]
        by_rule.setdefault(rule.split("_wildcards")[0], []).append("gres:gpu" in line)
    assert len(by_rule["rule_base_model"]) == 1 and len(by_rule["rule_corpus_shard"]) == 4
    gpu_rules = ("rule_base_model", "rule_train_run")
    assert all(all(by_rule[rule]) for rule in gpu_rules), "GPU rules must ask SLURM for a GPU"
    assert not any(by_rule["rule_toy_run"]), "CPU rules must not ask for a GPU"
    for path in COMPARED:
        assert (remote / path).read_bytes() == (local / path).read_bytes(), f"{path} differs from the local run"
    for path in TARGETS[:2]:  # the metric rows (the records' provenance and wall times differ by design)
        assert read_json(remote / path)["records"] == read_json(local / path)["records"], f"{path} differs"
    arrays = paths.record(paths.TOY_RUN, ".npz", experiment="routing")
    with np.load(remote / arrays) as remote_arrays, np.load(local / arrays) as local_arrays:
        assert sorted(remote_arrays) == sorted(local_arrays)
        assert all(np.array_equal(remote_arrays[key], local_arrays[key]) for key in local_arrays)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
