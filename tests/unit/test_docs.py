"""The README and docs/: every relative link resolves inside the repository, every command line they show is one
the project accepts, the generated parts equal what their scripts make from benchmarks/measured/, the SLURM page
matches the profile, and the front page stays one page with no history in it."""
import json
import re
import shlex
import subprocess
import sys

import pytest
import yaml
from conftest import ENV, ROOT

PAGES = [ROOT / "README.md", ROOT / "config" / "README.md", ROOT / "CHANGELOG.md",
         *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
COMMAND = re.compile(r"^(?:snakemake|make) ")


def written_configs(page: str) -> dict[str, str]:
    """The yaml blocks of a page that say which config file they are (first line `# e.g. config/x.yaml, ...`)."""
    blocks = re.findall(r"```yaml\n# (?:e\.g\. )?(\S+\.yaml)\b.*?\n(.*?)```", (ROOT / page).read_text(), re.S)
    return {name.rstrip(","): text for name, text in blocks}


def command_lines() -> list[tuple[str, str]]:
    """(page, line) for every `snakemake ...` and `make ...` line in a bash block of the README and docs/, each line
    once (with the first page that shows it; a line and its dry run `-n` are one: each is checked as a dry run)."""
    found = {}
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.splitlines():
                if COMMAND.match(line):
                    line = line.split("  #")[0].strip()
                    found.setdefault(line.removesuffix(" -n"), (str(page.relative_to(ROOT)), line))
    return list(found.values())


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves_inside_the_repository(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address, or an anchor on the same page
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{page.name}: {target} points outside the repository"
        assert path.exists(), f"{page.name}: {target} does not exist"


def test_the_command_lines_checked_include_the_readmes():
    lines = [line for _, line in command_lines()]
    assert {"make run", "make test", "make replicate"} <= set(lines)
    assert any("--config seeds='[0," in line for line in lines)
    assert any("--workflow-profile profiles/slurm" in line for line in lines)


@pytest.mark.parametrize("page, line", command_lines())
def test_every_documented_command_line_is_accepted(page, line, tmp_path):
    """A snakemake line passes its dry run (the SLURM profile with its placeholders filled in, as the docs say to do
    first); a make line names a target the Makefile has."""
    words = shlex.split(line)
    if words[0] == "make":
        result = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, f"{page}: {line}: {result.stderr}"
        return
    if "--workflow-profile" in words:
        profile = tmp_path / "slurm"
        profile.mkdir()
        text = (ROOT / "profiles/slurm/config.yaml").read_text()
        (profile / "config.yaml").write_text(text.replace("<cpu-partition>", "cpu").replace("<gpu-partition>", "gpu"))
        words[words.index("--workflow-profile") + 1] = str(profile)
    for i, word in enumerate(words):  # a config file the page writes out first: written here, as the reader would
        if word.endswith(".yaml") and not (ROOT / word).exists():
            text = written_configs(page).get(word)
            assert text is not None, f"{page}: {line}: {word} is neither in the repository nor written out on the page"
            (tmp_path / "written.yaml").write_text(text)
            words[i] = str(tmp_path / "written.yaml")
    if "--cores" not in words:
        words += ["--cores", "1"]
    result = subprocess.run([sys.executable, "-m", *words, "-n"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"{page}: {line}: {(result.stdout + result.stderr)[-2000:]}"


def test_the_readme_is_one_page_without_history():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for page in PAGES:
        text = page.read_text()
        assert not re.search(r"\b(?:commit|at) [0-9a-f]{7,40}\b", text), page.name  # no commit hashes
        assert not re.search(r"this session|the fast machine|slower machine", text, re.I), page.name


def test_the_readmes_checklist_is_rendered_from_the_measured_claims():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import front_page

    readme = (ROOT / "README.md").read_text()
    assert front_page.rendered(readme) == readme
    claims = json.loads((ROOT / front_page.SOURCE).read_text())["claims"]
    assert all(claim["claim"] in readme for claim in claims)
    assert (ROOT / "docs/img" / front_page.FIGURE).stat().st_size > 10_000


def test_the_cluster_page_matches_the_slurm_profile():
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    page = (ROOT / "docs/cluster.md").read_text()
    assert f"`jobs: {profile['jobs']}`" in page
    gpu_rules = [rule for rule, res in profile["set-resources"].items() if res.get("slurm_partition") == "<gpu-partition>"]
    listed = page.split("The rules that want a GPU", 1)[1].split(")", 1)[0]
    assert re.findall(r"`(\w+)`", listed) == gpu_rules


def test_the_citation_file_cites_the_pipeline_and_the_paper():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "MIT"
    assert citation["references"][0]["title"] == "Peculiarities of Mixture-of-Expert Optimization"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
