"""Shared test set-up: offline Hugging Face, deterministic torch, and the workflow helpers of the end-to-end
tests, with one finished smoke-config pipeline run shared by every test that reads it."""
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ["Snakefile", "Makefile", "workflow", "config", "profiles", "paper", "src"]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}


def pytest_collection_modifyitems(items):
    """`make test` runs two pytest-xdist workers, each taking whole test files (`--dist loadfile`). The shared
    pipeline run's file goes first (the longest chain: one worker makes the run), the SLURM test second, on the
    other worker (it waits on the cluster's controller most of the time, leaving the cores to that run), then the
    unit tests."""
    def order(item):
        if item.get_closest_marker("slurm"):
            return 1
        return 0 if "finished" in item.fixturenames else 2
    items.sort(key=order)  # stable: otherwise in collection order


@pytest.fixture(autouse=True)
def _deterministic_torch():
    import torch

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    yield


def snakemake(workdir: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Snakemake on the smoke config (config/test.yaml) in `workdir`, two cores."""
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/test.yaml",
                           *args], cwd=workdir, env=ENV, capture_output=True, text=True, **kwargs)


def copy_workflow(dest: Path) -> Path:
    """The workflow's files (no results) copied to `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(ROOT / name, dest / name)
    return dest


def copy_finished(finished: Path, dest: Path) -> Path:
    """A copy of a finished run, Snakemake's metadata included (so it is up to date as the original is)."""
    shutil.copytree(finished, dest, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="session")
def finished(tmp_path_factory) -> Path:
    """The whole smoke-config pipeline, run once per test session (the first worker to need it runs it, the
    other waits for it); tests that change it work on a copy."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's directory, above each worker's own
    workdir = shared / "pipeline"
    with open(shared / "pipeline.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "pipeline.done").exists():
            assert not workdir.exists(), "the shared pipeline run failed in the other worker (see its error)"
            result = snakemake(copy_workflow(workdir))
            assert result.returncode == 0, result.stderr[-4000:]
            (shared / "pipeline.done").touch()
    return workdir


class Killed(Exception):
    """Stands for a kill in the middle of a training run."""


def kill_at_batch(monkeypatch, batch: int) -> None:
    """Make training die when it draws its `batch`-th training batch (1-based); undo with monkeypatch.undo()."""
    from moe_rpo.training.batches import Batches

    calls, original = {"n": 0}, Batches.next

    def dying_next(self):
        calls["n"] += 1
        if calls["n"] == batch:
            raise Killed
        return original(self)

    monkeypatch.setattr(Batches, "next", dying_next)
