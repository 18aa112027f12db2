"""What a result was made with: package versions, git commit, platform, start time and runtime."""
from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "numpy", "pandas", "matplotlib", "seaborn", "jinja2", "snakemake", "transformers", "datasets",
            "tiktoken", "moe-rpo")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the checkout this package runs from (wherever the results go: `snakemake --directory`),
    or ("unknown", False) outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=here).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, check=True, cwd=here).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def provenance(started: dt.datetime, runtime_s: float) -> dict:
    commit, dirty = git_state()
    return {"versions": package_versions(), "git_commit": commit, "git_dirty": dirty,
            "python": sys.version.split()[0], "platform": platform.platform(),
            "started": started.isoformat(timespec="seconds"), "runtime_s": round(runtime_s, 3)}
