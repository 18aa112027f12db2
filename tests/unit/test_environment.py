"""environment.yml and pyproject.toml pin the same versions; torch is pinned to 2.13.0; records name the commit."""
import re
import subprocess
import tomllib

import pytest
import yaml
from conftest import ROOT

from moe_rpo import provenance


def _pins(lines):
    return dict(re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line).groups() for line in lines if "==" in line)


def test_pins_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pyproject = _pins(project["dependencies"] + [d for deps in project["optional-dependencies"].values() for d in deps])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == pyproject
    assert pyproject["torch"] == "2.13.0"
    assert all("==" in dep for dep in project["dependencies"]), "every dependency is pinned"


def test_records_name_the_checkouts_commit_whatever_the_working_directory(tmp_path, monkeypatch):
    """`snakemake --directory elsewhere` runs jobs outside the checkout: the commit is still the package's."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    if commit.returncode:  # a source tree without git: nothing to name
        pytest.skip("not a git checkout")
    monkeypatch.chdir(tmp_path)
    assert provenance.git_state()[0] == commit.stdout.strip()
