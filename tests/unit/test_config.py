"""The config schema: defaults, clear errors naming the key, and agreement with the routers."""
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from moe_rpo import config as cfg
from moe_rpo import schema, sections, values
from moe_rpo.experiments import EXPERIMENTS


def test_empty_config_gets_every_default():
    config = cfg.validate({})
    assert config["seeds"] == [0, 1, 2]
    assert config["toy"]["routing"]["steps"] == 2000
    assert len(config["toy"]["routing"]["experts"]) == 8


@pytest.mark.parametrize("overlays", [[], ["test.yaml"], ["full.yaml"], ["full.yaml", "paper.yaml"], ["regime.yaml"]])
def test_shipped_configs_are_valid(overlays):
    """Each overlay as `snakemake --configfile` uses it: merged over config.yaml (paper.yaml over full.yaml)."""
    cfg.load(ROOT / "config" / "config.yaml", *(ROOT / "config" / name for name in overlays))


def test_the_full_configs_benchmark_every_router_alike():
    """config/full.yaml benchmarks every built-in router; the smoke test.yaml the same ones (YAML has no includes)
    and the example plugin router, in every column."""
    full, smoke = (yaml.safe_load((ROOT / "config" / name).read_text()) for name in ("full.yaml", "test.yaml"))
    built_in = cfg.validate({})["routers"]
    assert {m["router"] for m in full["benchmark"]["methods"]} == set(built_in) and len(full["benchmark"]["methods"]) == 24
    assert full["shakespeare_moe"]["methods"] == full["benchmark"]["methods"]
    assert smoke["benchmark"]["methods"] == full["benchmark"]["methods"] + [{"router": "cosine", "k": 1}]
    assert smoke["routers"]["cosine"]["method"] == "plugin"
    assert {"router": "cosine", "k": 1} in smoke["shakespeare_moe"]["methods"]


def test_overlay_merges_mappings_and_replaces_lists(tmp_path):
    (tmp_path / "base.yaml").write_text("seeds: [0, 1, 2]\ntoy: {routing: {steps: 50, lr: 0.5}}\n")
    (tmp_path / "over.yaml").write_text("seeds: [7]\nreport: {trajectory_seed: 7}\ntoy: {routing: {steps: 9}}\n")
    config = cfg.load(tmp_path / "base.yaml", tmp_path / "over.yaml")
    assert config["seeds"] == [7]
    assert config["toy"]["routing"]["steps"] == 9 and config["toy"]["routing"]["lr"] == 0.5


@pytest.mark.parametrize("config, key", [
    ({"toy": {"routing": {"stepz": 5}}}, "toy.routing: unknown key(s) ['stepz']; allowed here: ['batch_size',"),
    ({"toy": {"routing": {"steps": 0}}}, "toy.routing.steps: 0 is less than the minimum of 1"),
    ({"toy": {"collapse": {"lr": "fast"}}}, "toy.collapse.lr: 'fast' is not of type 'number'"),
    ({"seeds": []}, "seeds: [] should be non-empty"),
    ({"routers": {"mine": {"method": "magic"}}}, "routers.mine.method: 'magic' is not one of"),
    ({"routers": {"mine": {"method": "rpo", "epsilon": 0.1}}}, "routers.mine: 'epsilon' is not one of"),
    ({"toy": {"routing": {"methods": [{"router": "standard", "k": 1}, {"router": "mine", "k": 1}]}}},
     "toy.routing.methods.1: router 'mine' is not defined"),
    ({"base_model": {"train": {"batch_size": 16, "processes": 3}}},
     "base_model.train: batch_size 16 (the global batch) is not divisible by processes 3"),
    ({"benchmark": {"recovery": {"methods": [{"router": "em", "k": 1}]}}},
     "benchmark.recovery.methods.0: em_k1 is not among benchmark.methods"),
    ({"benchmark": {"recovery": {"methods": [{"router": "hash", "k": 1}, {"router": "hash", "k": 1}]}}},
     "benchmark.recovery.methods: ['hash_k1'] appear(s) more than once"),
])
def test_bad_values_are_rejected_naming_the_key(config, key):
    with pytest.raises(values.ConfigError) as error:
        cfg.validate(config)
    assert key in str(error.value)


def test_the_benchmarks_recovery_settings_train_the_chosen_methods():
    """benchmark.recovery.methods: null trains every benchmark method in the benchmark's recovery settings; a
    choice trains those besides the recovery experiment's own, and the benchmark reads the runs of both."""
    from moe_rpo.experiments import benchmark_recovery_methods
    from moe_rpo.sections import recovery_methods

    every = cfg.validate({})["benchmark"]
    assert every["recovery"]["methods"] == every["methods"]
    bench = [{"router": "standard", "k": 1}, {"router": "hash", "k": 1}, {"router": "fixed_random", "k": 1}]
    config = cfg.validate({"benchmark": {"methods": bench, "recovery": {"methods": [{"router": "hash", "k": 1}]}}})
    experiment = config["recovery"]["methods"]
    assert recovery_methods(config, "sim0.3") == [*experiment, {"router": "hash", "k": 1}]
    assert benchmark_recovery_methods(config, "sim0.3") == bench[:2]  # fixed_random: 'not run'


def test_missing_config_file():
    with pytest.raises(values.ConfigError, match="config file not found: nowhere.yaml"):
        cfg.load("nowhere.yaml")


def test_router_specs_come_from_the_constructors():
    """The schema's router specs are generated from the router classes: a new option needs a declared Option
    (its description and range), and its type hint and range reach the config check."""
    from moe_rpo.routers import Router, RouterOutput
    from moe_rpo.routers.options import Option, spec_schema

    class Mine(Router):
        options = {"alpha": Option("a coefficient", minimum=0)}

        def __init__(self, dim: int, num_experts: int, k: int, alpha: float = 1.0, beta: int = 2):
            super().__init__(dim, num_experts, k)

        def forward(self, x, token_ids=None) -> RouterOutput:
            raise NotImplementedError

    with pytest.raises(TypeError, match="option 'beta' has no entry in Mine.options"):
        spec_schema({"mine": Mine})
    Mine.options = {**Mine.options, "beta": Option("a count", minimum=1)}
    branch, plugin = spec_schema({"mine": Mine})["allOf"]
    assert plugin["then"]["required"] == ["target"]
    assert branch["then"]["propertyNames"]["enum"] == ["method", "alpha", "beta"]
    assert branch["then"]["properties"]["beta"] == {"type": "integer", "description": "a count (default 2)",
                                                    "minimum": 1}
    del Mine.__init__.__annotations__["beta"]
    with pytest.raises(KeyError):  # an option without a type hint cannot be typed
        spec_schema({"mine": Mine})


@pytest.mark.parametrize("spec, message", [
    ({"method": "jitter", "epsilon": 1.5}, "routers.mine.epsilon: 1.5 is greater than or equal to the maximum of 1"),
    ({"method": "rpo", "weight_std": 0}, "routers.mine.weight_std: 0 is less than or equal to the minimum of 0"),
    ({"method": "hash", "mode": "nope"}, "routers.mine.mode: 'nope' is not one of ['random', 'balanced']"),
    ({"method": "switch", "capacity_factor": "big"}, "routers.mine.capacity_factor: 'big' is not of type"),
    ({"method": "em", "m_steps": 1.5}, "routers.mine.m_steps: 1.5 is not of type 'integer'"),
])
def test_router_option_values_are_checked_naming_the_option(spec, message):
    with pytest.raises(values.ConfigError, match=re.escape(message)):
        cfg.validate({"routers": {"mine": spec}})


@pytest.mark.parametrize("bad_config,messages", [
    ({"toy": {"barrier": {"frequency": -1}}}, ["frequency", "-1 is less than or equal to the minimum of 0"]),
    ({"corpora": {"web": {"source": "local"}}}, ["'path' is a required property"]),
    ({"corpora": {"web": {"source": "shakespeare", "tokenizer": "bpe"}}}, ["'bpe' is not one of ['gpt2', 'char']"]),
])
def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path, bad_config, messages):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_config))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bad)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    for message in messages:
        assert message in result.stderr + result.stdout


def test_snakemake_fills_corpus_defaults_per_source(tmp_path):
    """Snakemake's validator fills the defaults of the source's branch only (a local corpus gets no 'unit')."""
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"corpora": {"mine": {"source": "local", "path": str(tmp_path)}}}))
    result = subprocess.run([sys.executable, "-m", "snakemake", "results/data/mine/inventory.json", "-n", "--cores", "1",
                             "--printshellcmds", "--configfile", str(extra)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"text_column": "text"' in result.stdout and '"unit"' not in result.stdout


def test_cli_reports_a_bad_config_cleanly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("toy: {routing: {batch_size: 1}}\n")
    result = subprocess.run([sys.executable, "-m", "moe_rpo", "toy", "routing", "--config", str(bad),
                             "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "toy.routing.batch_size: 1 is less than the minimum of 2" in result.stderr
    assert "Traceback" not in result.stderr


def filled_slurm_profile(directory: Path) -> Path:
    """profiles/slurm with its placeholder partitions replaced, as a user does before the first run."""
    text = (ROOT / "profiles/slurm/config.yaml").read_text()
    (directory / "slurm").mkdir()
    (directory / "slurm/config.yaml").write_text(text.replace("<cpu-partition>", "cpu").replace("<gpu-partition>", "gpu"))
    return directory / "slurm"


def test_the_slurm_profiles_placeholders_are_refused_before_any_job():
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--workflow-profile",
                             "profiles/slurm"], cwd=ROOT, capture_output=True, text=True)
    printed = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the workflow profile still holds placeholders" in printed
    assert "set-resources.train_run.slurm_partition: <gpu-partition>" in printed
    assert "default-resources.slurm_partition: <cpu-partition>" in printed


@pytest.mark.parametrize("profile", ["local", "slurm"])
def test_paper_config_dry_run_lists_every_paper_experiment(profile, tmp_path):
    """config/paper.yaml over full.yaml (GPT-2 from the hub, OpenWebText, TinyStories) plans every experiment's
    DAG without data, a GPU or the network."""
    profile = [] if profile == "local" else ["--workflow-profile", str(filled_slurm_profile(tmp_path))]
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", *profile, "--configfile",
                             "config/full.yaml", "config/paper.yaml"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "corpus_shard" in result.stdout and "base_model" in result.stdout and "recovery_run" in result.stdout
    assert "results/data/openwebtext/shards/31.train.bin" in result.stdout
    assert "results/data/tinystories/shards/15.train.bin" in result.stdout
    for output in ["results/lm/pretraining/rpo_k2/seed0.json", "results/lm/shakespeare_moe/expert_choice_k2/seed2.json",
                   "results/lm/recovery/sim0.3/rpo_k1/seed2.json", "results/toy/benchmark/run.json",
                   *[f"results/report/{e.stem}.html" for e in EXPERIMENTS.values()]]:
        assert output in result.stdout, output


def test_adding_a_router_takes_three_places(monkeypatch):
    """The docs' walk-through (routers.md): write the class, register it, name it in the config; the toy then runs it."""
    import torch

    from moe_rpo import routers
    from moe_rpo.routers import RouterOutput
    from moe_rpo.routers.options import Option
    from moe_rpo.routers.softmax_topk import SoftmaxTopK
    from moe_rpo.toy import routing

    class Tempered(SoftmaxTopK):  # 1. the class: softmax top-k at a temperature
        options = {**SoftmaxTopK.options, "temperature": Option("softmax temperature", exclusive_minimum=0)}

        def __init__(self, dim: int, num_experts: int, k: int, normalize: bool = False, init_std: float = 0.01,
                     temperature: float = 2.0):
            super().__init__(dim, num_experts, k, normalize=normalize, init_std=init_std)
            self.temperature = temperature

        def forward(self, x, token_ids=None) -> RouterOutput:
            probs = torch.softmax(self.gate(x) / self.temperature, dim=-1)
            weights, experts = probs.topk(self.k, dim=-1)
            return RouterOutput(experts=experts, weights=weights, probs=probs)

    monkeypatch.setitem(routers.METHODS, "tempered", Tempered)  # 2. registered
    monkeypatch.setattr(schema, "_schema", functools.cache(schema._schema.__wrapped__))  # (the schema is cached)
    config = cfg.validate({"routers": {"warm": {"method": "tempered", "temperature": 4.0}},  # 3. named
                           "toy": {"routing": {"methods": [{"router": "standard", "k": 1}] + [
                               {"router": name, "k": 2} for name in ("standard", "jitter", "rl", "rpo", "warm")]}}})
    with pytest.raises(values.ConfigError, match=re.escape("routers.cold.temperature: 0 is less than or equal")):
        cfg.validate({"routers": {"cold": {"method": "tempered", "temperature": 0}}})
    arrays, records = routing.run(sections.experiment_settings(config, "routing") | {
        "methods": [{"router": "warm", "k": 1}], "steps": 5, "seeds": [0]})
    assert list(arrays) == ["seed0/warm_k1"] and records[0]["method"] == "warm"


def test_claims_name_their_arms_and_a_rename_fails_at_config_time():
    """A router renamed in the config, with the claims still naming the old one, is refused before any run;
    naming the new one in claims.arms makes the claims read its rows."""
    import pandas as pd

    from moe_rpo.claims import dilemma_claims

    renamed = {"routers": {"my_rpo": {"method": "rpo", "weight_std": 0.1}},
               "toy": {"dilemma": {"methods": [{"router": name, "k": 2}
                                               for name in ("standard", "standard_normalized", "rl", "my_rpo")]}}}
    with pytest.raises(values.ConfigError, match=re.escape("toy.dilemma.methods: the claims compare rpo ('rpo')")):
        cfg.validate(yaml.safe_load(yaml.safe_dump(renamed)))
    with pytest.raises(values.ConfigError, match=re.escape("claims.arms.rpo: router 'nope' is not defined")):
        cfg.validate({"claims": {"arms": {"rpo": "nope"}}})
    claims = cfg.validate({})["claims"]
    claims["arms"]["rpo"] = "my_rpo"
    rows = pd.DataFrame({"method": ["standard", "standard_normalized", "my_rpo", "rpo"] * 2, "seed": [0] * 4 + [1] * 4,
                         "final_distance": [0.3, 0.3, 0.01, 0.5] * 2, "standard_reachable_distance": 0.2,
                         "steps": 2000})
    assert [c["verdict"] for c in dilemma_claims(rows, claims)] == ["reproduced", "reproduced"]  # my_rpo's row


def test_the_profiles_give_every_rule_the_same_memory_and_runtime():
    """profiles/default and profiles/slurm hold the jobs' resources; they must not drift apart."""
    def resources(profile):
        loaded = yaml.safe_load((ROOT / "profiles" / profile / "config.yaml").read_text())
        per_rule = {rule: {key: value for key, value in res.items() if key in ("mem_mb", "runtime")}
                    for rule, res in loaded["set-resources"].items()}
        defaults = {key: loaded["default-resources"][key] for key in ("mem_mb", "runtime")}
        return defaults, per_rule

    assert resources("default") == resources("slurm")
    assert resources("default")[1]["recovery_run"] == {"mem_mb": 16000, "runtime": 480}


def test_the_typed_training_settings_are_the_schemas_train_section_each_field_documented():
    from moe_rpo.training.settings import TrainSettings

    train = schema.validate_definition({}, "lm_train")  # every key, with its default
    assert TrainSettings.of(train).as_dict() == train
    with pytest.raises(ValueError, match=r"unknown training settings \['stpes'\]"):
        TrainSettings.of({**train, "stpes": 3})


@pytest.mark.parametrize("module, name", [("moe_rpo.training.settings", "TrainSettings"),
                                          ("moe_rpo.lm.recovery", "RecoveryRunSettings"),
                                          ("moe_rpo.lm.recovery", "RecoveryDesignSettings"),
                                          ("moe_rpo.lm.scratch", "TrainingRunSettings"),
                                          ("moe_rpo.lm.base_model", "BaseModelSettings"),
                                          ("moe_rpo.job_kinds", "JobKind"),
                                          *(("moe_rpo.toy.settings", name) for name in (
                                              "ToySettings", "FixedExpertsSettings", "CollapseSettings",
                                              "BarrierSettings"))])
def test_every_field_of_a_typed_settings_class_is_documented(module, name):
    import ast
    import importlib
    import inspect

    body = next(node for node in ast.parse(inspect.getsource(importlib.import_module(module))).body
                if isinstance(node, ast.ClassDef) and node.name == name).body
    fields = [node.target.id for node in body if isinstance(node, ast.AnnAssign)]
    undocumented = [node.target.id for node, after in zip(body, body[1:]) if isinstance(node, ast.AnnAssign)
                    and not (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant))]
    assert fields and undocumented == []
