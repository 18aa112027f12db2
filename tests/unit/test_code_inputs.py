"""Code inputs are derived from imports: the ast walk agrees with Python's own static import finder, and
every rule lists exactly what its command imports, less the exclusions declared next to the rule."""
import ast
import json
import modulefinder
import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT

from moe_rpo import code_inputs
from moe_rpo import config as cfg
from moe_rpo.job_kinds import JOB_KINDS
from moe_rpo.code_inputs import (
    CLI,
    PACKAGE_DIR,
    closure,
    command_code,
    command_modules,
    module_file,
)
from moe_rpo.experiments import EXPERIMENTS
from moe_rpo.routers import router_class, unused_router_modules

SRC = PACKAGE_DIR.parent
MODULES = sorted(".".join(("moe_rpo", *path.relative_to(PACKAGE_DIR).with_suffix("").parts)).removesuffix(".__init__")
                 for path in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in path.parts)
# What a rule deliberately leaves out of its code inputs (and why, next to the rule in workflow/rules/).
ROUTER_JOBS = ("recovery_run", "recovery_layers_run", "recovery_design", "train_run", "reading_run")  # router_code
EXCLUDED = {"base_model": ("moe_rpo.routers", "moe_rpo.models.moe", "moe_rpo.models.distractors",
                          "moe_rpo.routing_metrics")}


def finder_modules(module: str) -> set[str]:
    """The package modules that Python's modulefinder (bytecode, nested functions included) reaches."""
    finder = modulefinder.ModuleFinder(path=[str(SRC)])  # only the package: third-party imports stay unresolved
    finder.import_hook(module)  # as `import module` does: its parent packages first
    return {name for name in finder.modules if name.startswith("moe_rpo")}


@pytest.mark.parametrize("module", [m for m in MODULES if m != CLI])
def test_the_import_walk_agrees_with_modulefinder(module, monkeypatch):
    monkeypatch.setattr(code_inputs, "IGNORED_EDGES", set())
    assert closure([module]) == finder_modules(module)


def test_a_command_counts_only_its_own_imports():
    assert "moe_rpo.experiments" in command_modules("figures") and "moe_rpo.experiments" not in command_modules("toy")
    assert "moe_rpo.provenance" in command_modules("toy")  # imported by a helper (_timed) that commands share
    with pytest.raises(ValueError, match="no command 'fly'"):
        command_modules("fly")


def dry_run_jobs() -> list[tuple[str, list[str], str, dict[str, str], dict[str, str]]]:
    """(rule, its code inputs, its shell command, its resources, its wildcards) of every job of the smoke config's
    DAG."""
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile",
                             "config/test.yaml", "--forceall"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        command = re.search(r"Shell command: (.*)", block)
        if rule and command and "-m moe_rpo" in command.group(1):
            inputs = re.search(r"\n    input: (.*)", block).group(1).split(", ")
            resources = dict(r.split("=", 1) for r in re.search(r"\n    resources: (.*)", block).group(1).split(", "))
            wildcards = re.search(r"\n    wildcards: (.*)", block)
            wildcards = dict(w.split("=", 1) for w in wildcards.group(1).split(", ")) if wildcards else {}
            jobs.append((rule.group(1), sorted(i for i in inputs if i.startswith("src/")), command.group(1), resources,
                         wildcards))
    return jobs


def test_every_rule_lists_what_its_command_imports_and_gpu_rules_ask_for_a_gpu():
    jobs = dry_run_jobs()
    assert len({rule for rule, *_ in jobs}) >= 20
    gpu_rules = {kind.rule for kind in JOB_KINDS.values() if kind.gpu}
    assert gpu_rules == {"base_model", "recovery_run", "recovery_layers_run", "recovery_design", "train_run", "reading_run"}
    config = cfg.load(str(ROOT / "config/config.yaml"), str(ROOT / "config/test.yaml"))
    for rule, code, shell, resources, wildcards in jobs:
        # what the SLURM profile sends to GPU nodes (tests/workflow/test_slurm.py runs two of them there)
        assert (resources.get("gpu") == "1") == (rule in gpu_rules), rule
        words = shell.split("-m moe_rpo ")[1].split()
        command, extra = words[0], []
        if rule in JOB_KINDS:  # the rule runs the command its kind declares, with the settings of its kind's slice
            kind = JOB_KINDS[rule]
            assert command == kind.command, rule
            given = shlex.split(shell.split("--settings ", 1)[1])[0] if "--settings " in shell else None
            assert given == kind.settings_json(config, wildcards), rule
            assert shell.startswith(shlex.join(kind.launcher(json.loads(given)))), rule
        if command == "toy":  # it imports the toy experiment's module by name
            extra = [f"moe_rpo.toy.{words[1]}"]
        elif command in ("tables", "figures"):  # they import the functions the registry names
            extra = EXPERIMENTS[words[1]].modules(command)
        imported = command_code(command, *extra)
        exclude = EXCLUDED.get(rule, ())
        if rule in ROUTER_JOBS:  # a job of one method: the built-in routers it never builds are left out
            settings = json.loads(shlex.split(shell.split("--settings ", 1)[1])[0])
            built = JOB_KINDS[rule].routers(settings)  # its method's, and (recovery) the oracle's probe router
            exclude = unused_router_modules(built)
            own = {router_class(spec).__module__ for spec in built if spec["method"] != "plugin"}
            assert exclude and not own & set(exclude), rule
            if rule.startswith("recovery"):
                assert "moe_rpo.routers.softmax_topk" in own, rule
        expected = command_code(command, *extra, exclude=exclude)
        assert code == expected, rule
        assert set(code) <= set(imported), rule


def test_a_job_of_one_router_lists_that_router_and_what_it_builds_on_and_no_other():
    code = command_code("recovery", exclude=unused_router_modules([{"method": "jitter"}]))
    assert {"src/moe_rpo/routers/jitter.py", "src/moe_rpo/routers/softmax_topk.py"} <= set(code)  # its base class
    assert "src/moe_rpo/routers/rpo.py" not in code and "src/moe_rpo/routers/base.py" in code
    plugin = {"method": "plugin", "target": "custom_router:CosineRouter"}
    assert not {path for path in command_code("train", exclude=unused_router_modules([plugin]))
                if path.startswith("src/moe_rpo/routers/") and path.endswith(("rpo.py", "switch.py"))}


def test_a_router_edit_does_not_retrain_the_dense_base_model():
    base = command_code("base-model", exclude=EXCLUDED["base_model"])
    assert not any("routers/" in path for path in base) and "src/moe_rpo/training/loop.py" in base
    assert "src/moe_rpo/routers/rpo.py" in command_code("recovery")
    assert "src/moe_rpo/cli.py" in command_code("claims") and "src/moe_rpo/config.py" in command_code("claims")


def test_shared_cli_helpers_pull_in_no_training_code():
    """A CLI helper's imports count for every command: the corpus, table, claims and report commands must not
    depend on the routers or the training loop (a router edit would re-tokenize the corpora)."""
    for command in ("corpus-inventory", "corpus-shard", "corpus-gather", "claims", "report", "figures"):
        code = command_code(command)
        assert not any(part in path for path in code for part in ("routers/", "training/", "models/")), command


def explicit_imports(module: str) -> set[str]:
    """The package modules `module` names in its import statements (top level or in a function): `from a.b import c`
    is a.b.c where that is a module, else a.b. Parent packages that Python runs first are not counted."""
    path = module_file(module)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{a.name}" if module_file(f"{node.module}.{a.name}") else node.module
                      for a in node.names}
    return {name for name in found if name.startswith("moe_rpo") and module_file(name) and name != module}


def test_no_import_cycle_in_the_package():
    modules = {".".join(("moe_rpo", *path.relative_to(PACKAGE_DIR).with_suffix("").parts)).removesuffix(".__init__")
               for path in PACKAGE_DIR.rglob("*.py")}
    graph = {module: explicit_imports(module) for module in modules}
    done, on_path = set(), []

    def visit(module):  # depth first; a module met again on the current path closes a cycle
        if module in on_path:
            raise AssertionError("import cycle: " + " -> ".join(on_path[on_path.index(module):] + [module]))
        if module in done:
            return
        on_path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        on_path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
