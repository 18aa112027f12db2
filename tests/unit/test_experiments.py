"""The experiment registry: every entry's functions exist, its files are its own, and nothing else in the
package branches on an experiment's name."""
import re

import pytest

from moe_rpo import cli, config as cfg
from moe_rpo.code_inputs import PACKAGE_DIR, command_code
from moe_rpo.experiments import EXPERIMENTS, load

REFS = [(name, field) for name, e in EXPERIMENTS.items() for field in ("make_tables", "draw", "claims", "facts")
        if getattr(e, field)]


@pytest.mark.parametrize("name, field", REFS)
def test_every_named_function_exists(name, field):
    assert callable(load(getattr(EXPERIMENTS[name], field)))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_the_rules_code_inputs_hold_the_modules_an_entry_names(name):
    experiment = EXPERIMENTS[name]
    for command, ref in (("tables", experiment.make_tables), ("figures", experiment.draw)):
        module = ref.split(":")[0].replace(".", "/")
        assert f"src/{module}.py" in command_code(command, *experiment.modules(command)), (name, command)


def test_stems_tables_and_figures_belong_to_one_experiment():
    stems = [e.stem for e in EXPERIMENTS.values()]
    tables = [f for e in EXPERIMENTS.values() for f in e.tables]
    figures = [f for e in EXPERIMENTS.values() for f in e.figures]
    assert len(set(stems)) == len(stems) and len(set(tables)) == len(tables) and len(set(figures)) == len(figures)
    for e in EXPERIMENTS.values():
        assert set(e.shown) <= set(e.tables) and all(f.startswith(e.stem) for f in (*e.tables, *e.figures))
        assert not e.claims or e.seeds_table in e.tables  # the claims read the per-seed table


def test_no_module_branches_on_an_experiment_name():
    names = "|".join(EXPERIMENTS)
    ladder = re.compile(rf"""(experiment|page|stem)\w*\s*(==|!=|in)\s*\(?["']({names}|(toy|lm)_\w+)["']""")
    hits = [f"{path.name}:{i}" for path in PACKAGE_DIR.rglob("*.py") if path.name != "experiments.py"
            for i, line in enumerate(path.read_text().splitlines(), 1) if ladder.search(line)]
    assert hits == []


def test_the_tables_command_writes_exactly_the_files_it_is_given(tmp_path):
    args = ["tables", "routing", "--runs", str(tmp_path / "seed0.json"), "--settings", "{}", "--out",
            str(tmp_path / "toy_routing_summary.csv"), str(tmp_path / "toy_routing_seeds.csv")]
    assert cli.main(args) == 2  # the wrong order: refused before any work
    assert not list(tmp_path.iterdir())


def test_each_claim_arm_names_a_key_of_claims_arms():
    arms = set(cfg.validate({})["claims"]["arms"]) | {cfg.DENSE}
    assert {arm for e in EXPERIMENTS.values() for arm, _ in e.claim_arms} <= arms
