"""Shared test set-up: offline Hugging Face, deterministic torch, and the workflow helpers of the end-to-end
tests, with one finished smoke-config pipeline run shared by every test that reads it."""
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
    """The whole smoke-config pipeline, run once per test session; tests that change it work on a copy."""
    workdir = copy_workflow(tmp_path_factory.mktemp("pipeline"))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir
