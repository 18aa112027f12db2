"""The experiment registry: every entry's functions exist, its files are its own, and nothing else in the
package branches on an experiment's name."""
import re

import pytest

from moe_rpo import cli
from moe_rpo import config as cfg
from moe_rpo.code_inputs import PACKAGE_DIR, command_code
from moe_rpo.experiments import EXPERIMENTS, load
from moe_rpo.values import DENSE

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


NAME = "|".join(EXPERIMENTS) + r"|(?:toy|lm)_\w+"
BRANCHES = [  # a comparison with an experiment's name, plain or subscripted, and a mapping keyed by names
    re.compile(rf"""(experiment|page|stem)\w*(\.\w+|\[["']\w+["']\])*\s*(==|!=|in|not in)\s*[(\[{{]?\s*["']({NAME})["']"""),
    re.compile(rf"""\[["'](experiment|stem)["']\]\s*(==|!=|in|not in)\s*[(\[{{]?\s*["']({NAME})["']"""),
    re.compile(rf"""[{{,]\s*["']({NAME})["']\s*:.*,\s*["']({NAME})["']\s*:"""),
]


def name_branches(text: str) -> list[int]:
    return [i for i, line in enumerate(text.splitlines(), 1) if any(b.search(line) for b in BRANCHES)]


def test_no_module_branches_on_an_experiment_name():
    hits = [f"{path.name}:{i}" for path in PACKAGE_DIR.rglob("*.py") if path.name != "experiments.py"
            for i in name_branches(path.read_text())]
    assert hits == []


@pytest.mark.parametrize("line", ['if x["experiment"] == "shakespeare_moe":', "if record['experiment'] in ('routing', 'x'):",
                                  'keep = experiment.name != "recovery"', 'if stem == "lm_benchmark":',
                                  'by_source = {"routing": [], "recovery": []}'])
def test_the_guard_catches_every_form_of_an_experiment_name_branch(line):
    assert name_branches(line) == [1]


def test_the_tables_command_writes_exactly_the_files_it_is_given(tmp_path):
    args = ["tables", "routing", "--runs", str(tmp_path / "seed0.json"), "--settings", "{}", "--out",
            str(tmp_path / "toy_routing_summary.csv"), str(tmp_path / "toy_routing_seeds.csv")]
    assert cli.main(args) == 2  # the wrong order: refused before any work
    assert not list(tmp_path.iterdir())


def test_each_claim_arm_names_a_key_of_claims_arms():
    arms = set(cfg.validate({})["claims"]["arms"]) | {DENSE}
    assert {arm for e in EXPERIMENTS.values() for arm, _ in e.claim_arms} <= arms
