"""Bad input found by an adversarial run (issue 15): each case gets a clear error before work starts,
naming the key, file or value, or a correct result; never a silent one."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT

from moe_rpo import config as cfg
from moe_rpo import schema, sections, values
from moe_rpo.claims import evaluate as evaluate_claims
from moe_rpo.data.prepare import gather, inventory, prepare_corpus, tokenize_shard
from moe_rpo.data.sources import CorpusError, count_documents
from moe_rpo.data.tokens import open_tokens, read_meta
from moe_rpo.io import set_aside_unreadable, write_json
from moe_rpo.lm import recovery, scratch
from moe_rpo.lm.base_model import build_base
from moe_rpo.models import GPT, GPTConfig, from_hf, load_gpt, save_gpt
from moe_rpo.tables import per_seed_table
from moe_rpo.training.evaluation import evaluate
from moe_rpo.training.loop import train_lm
from moe_rpo.training.settings import TrainSettings

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
TINY_TRAIN = {"steps": 6, "batch_size": 4, "block_size": 16, "eval_every": 3, "eval_batches": 2,
              "checkpoint_every": 3, "device": "cpu"}
TINY_MODEL = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16}


def refused(config: dict, message: str) -> None:
    with pytest.raises(values.ConfigError, match=re.escape(message)):
        cfg.validate(config)


def dry_run(*args: str) -> subprocess.CompletedProcess:
    """`snakemake -n` in the checkout; its messages (stdout and stderr together) in .stdout."""
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", *args], cwd=ROOT, env=ENV,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


def char_corpus(root: Path, split_seed: int = 2357) -> Path:
    spec = schema.validate_definition({"source": "shakespeare", "tokenizer": "char", "max_documents": 20,
                                    "val_fraction": 0.3, "split_seed": split_seed}, "corpus_spec")
    prepare_corpus(spec, root, shards=1)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return char_corpus(tmp_path_factory.mktemp("bad_input") / "corpus")


def training_settings(method: str = "standard_k1") -> dict:
    paper_methods = [{"router": r, "k": k} for r, k in (("standard", 1), ("standard", 2), ("em", 1), ("rpo", 1),
                                                        ("hash", 1))]
    config = cfg.validate({"shakespeare_moe": {"model": dict(TINY_MODEL), "train": dict(TINY_TRAIN),
                                               "methods": paper_methods},
                           "routerless": {"fixed": [{"router": "hash", "k": 1}],
                                          "learned": [{"router": "standard", "k": 1}]}})
    return sections.training_run_settings(config, "shakespeare_moe", method)


def tiny_gpt(vocab: int, block_size: int = 16) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, block_size=block_size, n_layer=2, n_head=2, n_embd=16))


# 1. --config values inside lists and mappings --------------------------------------------------

def test_nested_command_line_integers_are_integers():
    config = {"seeds": ["0", "1"], "toy": {"routing": {"steps": "10", "ks": ["1"]}}}
    overrides = {"seeds": ["0", "1"], "toy": {"routing": {"steps": "10", "ks": ["1"]}}}
    typed = cfg.typed_command_line_values(config, overrides)
    assert typed["seeds"] == [0, 1] and typed["toy"]["routing"] == {"steps": 10, "ks": [1]}
    result = dry_run("--config", "toy={routing: {steps: 10}}", "seeds=[0,1]", "report={trajectory_seed: 1}")
    assert result.returncode == 0, result.stdout[-2000:]


# 2. toy k bounded ------------------------------------------------------------------------------

def test_toy_k_above_the_grid_search_bound_is_refused():
    refused({"toy": {"routing": {"methods": [{"router": "standard", "k": 3}]}}}, "toy.routing.methods.0.k: k=3 is above 2")
    refused({"toy": {"dilemma": {"methods": [{"router": "standard", "k": 1}, {"router": "rpo", "k": 9}]}}},
            "toy.dilemma.methods.1.k: k=9 is above 2")
    refused({"benchmark": {"methods": [{"router": "standard", "k": 3}]}}, "benchmark.methods.0.k: k=3 is above 2")


# 3. routers that cannot be built, models that cannot be built ----------------------------------

def test_k_above_the_number_of_experts_is_refused_naming_the_key():
    refused({"recovery": {"methods": [{"router": "standard", "k": 1}, {"router": "standard", "k": 5}]}},
            "recovery.methods.1: router 'standard' with k=5 over 4 experts")


def test_base_with_k2_is_refused_naming_the_key():
    refused({"shakespeare_moe": {"methods": [{"router": "standard", "k": 1}, {"router": "base", "k": 2},
                                         {"router": "hash", "k": 1}]},
             "routerless": {"fixed": [{"router": "hash", "k": 1}], "learned": [{"router": "standard", "k": 1}]}},
            "shakespeare_moe.methods.1: router 'base' with k=2 over 4 experts: BaseLayer routes each token to at most "
            "1 expert(s): k must be 1")


def test_n_embd_not_divisible_by_n_head_is_refused():
    refused({"base_model": {"model": {"n_embd": 130, "n_head": 4}}},
            "base_model.model.n_embd: 130 is not divisible by n_head 4")


def test_a_router_that_cannot_be_built_fails_the_dry_run_naming_the_key():
    result = dry_run("--config", "recovery={methods: [{router: standard, k: 5}]}")
    assert result.returncode != 0
    assert "recovery.methods.0: router 'standard' with k=5 over 4 experts" in result.stdout, result.stdout


# 4. a recovery job on a base model with a shorter context --------------------------------------

def test_recovery_job_names_the_block_size_key(corpus, tmp_path):
    base = tmp_path / "base.pt"
    save_gpt(tiny_gpt(read_meta(corpus)["vocab_size"], block_size=8), base)
    settings = sections.recovery_run_settings(cfg.validate({}), "diff", "standard_k1")
    block = settings["train"]["block_size"]
    with pytest.raises(ValueError, match=re.escape(f"recovery.train.block_size: {block} exceeds the base "
                                                   f"model's block_size 8")):
        recovery.run(settings, sections.recovery_settings(settings)["diff"], 0, base, corpus, tmp_path / "run.ckpt")


# 5. and 6. settings and methods that would collapse into one ------------------------------------

def test_sim_scales_with_the_same_name_are_refused():
    refused({"recovery": {"sim_scales": [0.3, 0.30000001]}}, "recovery.sim_scales: [0.3, 0.30000001] give the settings")


@pytest.mark.parametrize("section", ["recovery", "benchmark"])
def test_duplicate_methods_are_refused(section):
    twice = [{"router": "standard", "k": 1}, {"router": "rpo", "k": 1}, {"router": "standard", "k": 1}]
    refused({section: {"methods": twice}}, f"{section}.methods: ['standard_k1'] appear(s) more than once")


# 7. untied Hugging Face heads ------------------------------------------------------------------

@pytest.fixture(scope="module")
def untied_hf(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("untied") / "model"
    GPT2LMHeadModel(GPT2Config(vocab_size=80, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                               tie_word_embeddings=False)).save_pretrained(path)
    return path


def test_untied_hf_checkpoint_is_refused(untied_hf, corpus):
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        from_hf(untied_hf)
    settings = cfg.validate({"base_model": {"source": "huggingface", "hf_name": str(untied_hf)}})["base_model"]
    with pytest.raises(ValueError, match="base_model.hf_name: .*tie_word_embeddings"):
        build_base(settings, corpus)


# 8. non-finite numbers -------------------------------------------------------------------------

def test_a_diverging_last_step_stops_the_run(corpus, monkeypatch):
    real_step = torch.optim.AdamW.step

    def diverging_step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        if self.state[self.param_groups[0]["params"][0]]["step"] == TINY_TRAIN["steps"]:  # the last step
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", diverging_step)
    with pytest.raises(FloatingPointError, match="evaluation after step 6: non-finite evaluation loss"):
        scratch.run(training_settings(), 0, corpus)


def test_non_finite_numbers_never_reach_a_record_a_table_or_a_verdict(tmp_path):
    with pytest.raises(FloatingPointError, match=r"records\.0\.val_loss is not a finite number"):
        write_json(tmp_path / "run.json", {"records": [{"val_loss": float("nan")}]})
    assert not (tmp_path / "run.json").exists()
    (tmp_path / "old.json").write_text('{"records": [{"method": "rpo", "k": 1, "seed": 0, "val_loss": NaN}]}')
    with pytest.raises(ValueError, match=r"old.json: records\.0\.val_loss is not a finite number"):
        per_seed_table([tmp_path / "old.json"])
    tables = tmp_path / "tables"
    tables.mkdir()
    stems = ["toy_routing", "toy_collapse", "toy_dilemma", "toy_barrier", "lm_recovery", "lm_shakespeare_moe",
             "lm_pretraining"]
    for stem in stems:  # empty tables: the first claim read stops on its table
        pd.DataFrame({"method": ["rpo"], "k": [2], "seed": [0], "final_distance": [float("nan")]}).to_csv(
            tables / f"{stem}_seeds.csv", index=False)
    with pytest.raises(ValueError, match="toy_routing_seeds.csv: non-finite values \\[nan\\] for 'RPO K=2 final"):
        evaluate_claims(tables, cfg.validate({})["claims"])


# 9. a checkpoint made on other data ------------------------------------------------------------

def test_a_checkpoint_made_on_other_data_is_not_resumed(corpus, tmp_path):
    other = char_corpus(tmp_path / "other", split_seed=1)
    assert read_meta(other)["vocab_size"] == read_meta(corpus)["vocab_size"]
    settings = training_settings()
    checkpoint = tmp_path / "run.ckpt"
    scratch.run(settings, 0, corpus, checkpoint)  # leaves its step-3 checkpoint behind
    assert checkpoint.is_file()
    assert scratch.run(settings, 0, other, checkpoint) == scratch.run(settings, 0, other)


def test_a_base_model_checkpoint_made_on_other_data_is_not_resumed(corpus, tmp_path):
    other = char_corpus(tmp_path / "other", split_seed=1)
    settings = cfg.validate({"base_model": {"model": dict(TINY_MODEL), "train": dict(TINY_TRAIN)},
                             "recovery": {"train": {"block_size": 16}}})["base_model"]
    checkpoint = tmp_path / "base.ckpt"
    build_base(settings, corpus, checkpoint)
    resumed, fresh = build_base(settings, other, checkpoint)[1], build_base(settings, other)[1]
    assert resumed == fresh


# 10. (slow, in test_pipeline.py: every product the docs list is a target of `all`)
# 11. a truncated record ------------------------------------------------------------------------

def test_a_truncated_record_is_named_and_set_aside(tmp_path):
    record = tmp_path / "seed0.json"
    write_json(record, {"records": [{"val_loss": 1.0}]})
    record.write_text(record.read_text()[:10])
    with pytest.raises(ValueError, match=f"{re.escape(str(record))} is not valid JSON"):
        per_seed_table([record])
    (message,) = set_aside_unreadable([record, tmp_path / "missing.json"])
    assert str(record) in message and not record.exists() and (tmp_path / "seed0.json.corrupt").is_file()


# 12. unreadable inputs are named ---------------------------------------------------------------

def test_a_truncated_model_file_is_named(tmp_path):
    path = tmp_path / "model.pt"
    save_gpt(tiny_gpt(32), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} is not a readable model file"):
        load_gpt(path)
    (message,) = set_aside_unreadable([path])
    assert "model.pt cannot be read" in message


def fresh_history(corpus, checkpoint=None):
    """A tiny dense GPT trained on the corpus (with an optional checkpoint): its evaluation history."""
    tokens = [open_tokens(corpus, split) for split in ("train", "val")]
    settings = TrainSettings.of(schema.validate_definition(dict(TINY_TRAIN), "lm_train"))
    return train_lm(tiny_gpt(read_meta(corpus)["vocab_size"]), *tokens, settings, seed=0, checkpoint=checkpoint,
                    fingerprint="f")


def test_a_corrupt_checkpoint_is_named_and_training_starts_afresh(corpus, tmp_path, capfd):
    checkpoint = tmp_path / "run.ckpt"
    checkpoint.write_bytes(b"PK\x03\x04 not really a zip file")
    assert fresh_history(corpus, checkpoint) == fresh_history(corpus)
    assert f"ignoring the unreadable checkpoint {checkpoint}" in capfd.readouterr().err


def test_a_validation_split_shorter_than_a_window_is_named(tmp_path):
    path = tmp_path / "val.bin"
    np.arange(10, dtype=np.uint16).tofile(path)
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    settings = TrainSettings.of(schema.validate_definition(dict(TINY_TRAIN), "lm_train"))
    with pytest.raises(ValueError, match=f"{re.escape(str(path))} holds 10 tokens, too few for one window"):
        evaluate(tiny_gpt(32), tokens, settings, torch.device("cpu"))


@pytest.mark.parametrize("change, message", [
    (lambda meta: meta.update(dtype="int7"), "dtype 'int7' is not one of"),
    (lambda meta: meta.pop("splits"), "it has no 'splits' mapping"),
    (lambda meta: meta["splits"]["val"].pop("sha256"), "splits.val lacks one of"),
])
def test_a_bad_meta_json_is_named(corpus, tmp_path, change, message):
    import json
    import shutil

    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    meta = json.loads((copy / "meta.json").read_text())
    change(meta)
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorpusError, match=f"{re.escape(str(copy / 'meta.json'))}: {re.escape(message)}"):
        read_meta(copy)


def test_a_file_named_parquet_that_is_not_parquet_is_named(tmp_path):
    (tmp_path / "docs").mkdir()
    fake = tmp_path / "docs" / "part.parquet"
    fake.write_text("not parquet at all")
    spec = schema.validate_definition({"source": "local", "path": str(tmp_path / "docs")}, "corpus_spec")
    with pytest.raises(CorpusError, match=f"{re.escape(str(fake))}: not a readable Parquet file"):
        count_documents(spec)


def test_a_missing_hf_name_is_named(corpus, tmp_path):
    missing = tmp_path / "no_such_model"
    settings = cfg.validate({"base_model": {"source": "huggingface", "hf_name": str(missing)}})["base_model"]
    with pytest.raises(ValueError, match=f"base_model.hf_name: cannot load a GPT-2 checkpoint from '{missing}'"):
        build_base(settings, corpus)


# 13. an unknown top-level key ------------------------------------------------------------------

def test_an_unknown_top_level_key_gets_a_short_message():
    result = dry_run("--config", "sedes=[0]")
    assert result.returncode != 0
    assert "<top level>: unknown key(s) ['sedes']; allowed here: ['base_model'," in result.stdout
    assert len(result.stdout.splitlines()) < 10, result.stdout


def test_the_documented_error_examples_are_what_the_pipeline_prints():
    readme = (ROOT / "docs/configuration.md").read_text()
    for overrides in (["toy={routing: {steps: 0}}"], ["sedes=[0]"]):
        printed = dry_run("--config", *overrides).stdout
        key = overrides[0].split("=")[0]
        example = next(block for block in re.findall(r"```\n(invalid config:\n.*?)```", readme, re.S)
                       if key in block)
        assert example.strip() in printed, (example, printed)


# 14. shard checksums ---------------------------------------------------------------------------

def test_a_flipped_byte_in_a_shard_is_refused(tmp_path):
    spec = schema.validate_definition({"source": "shakespeare", "tokenizer": "char", "max_documents": 6},
                                   "corpus_spec")
    record = inventory(spec)
    prefix = tmp_path / "shards" / "0"
    tokenize_shard(record, 1, 0, prefix)
    shard = tmp_path / "shards" / "0.train.bin"
    data = bytearray(shard.read_bytes())
    data[5] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(CorpusError, match=f"shard file {re.escape(str(shard))} does not match the sha256"):
        gather(record, [prefix], tmp_path / "out")
    assert not (tmp_path / "out" / "train.bin").exists()


# 15. checkpoints are not unpickled -------------------------------------------------------------

class Payload:
    """Unpickling this object writes a marker file: what a swapped checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_checkpoint_cannot_run_code_when_read(corpus, tmp_path, capfd):
    checkpoint, marker = tmp_path / "run.ckpt", tmp_path / "code_ran"
    torch.save({"fingerprint": "f", "payload": Payload(marker)}, checkpoint)
    assert fresh_history(corpus, checkpoint) == fresh_history(corpus)
    assert not marker.exists()
    assert "ignoring the unreadable checkpoint" in capfd.readouterr().err


def test_checkpoints_still_resume_under_weights_only(corpus, tmp_path, monkeypatch):
    """A real checkpoint holds tensors and plain types only: it loads with weights_only=True and resumes."""
    checkpoint = tmp_path / "run.ckpt"
    uninterrupted = fresh_history(corpus)
    real_step, calls = torch.optim.AdamW.step, {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # after the step-3 checkpoint
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        fresh_history(corpus, checkpoint)
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    torch.load(checkpoint, weights_only=True)
    assert fresh_history(corpus, checkpoint) == uninterrupted


def test_the_routerless_groups_take_fixed_and_learned_routers_by_their_trait():
    refused({"routerless": {"fixed": [{"router": "standard", "k": 1}]}},
            "routerless.fixed.0: router 'standard' (softmax_topk) trains; the fixed group takes fixed routers only")


# --- names that become paths and shell words (second adversarial run, cases 1 and 2) ----------------------

@pytest.mark.parametrize("name", ["x$(touch /tmp/PWNED)", "../../../../tmp/x", "a/b", "..", "", "a{x}", "x" * 300,
                                  "-rf", "a b", "a;b"])
def test_a_router_name_that_is_not_a_plain_word_is_refused_naming_the_key(name):
    refused({"routers": {name: {"method": "softmax_topk"}}}, "routers:")


@pytest.mark.parametrize("name", ["../x", "a b", "x" * 65])
def test_a_corpus_name_that_is_not_a_plain_word_is_refused(name):
    refused({"corpora": {name: {"source": "shakespeare"}}}, "corpora:")


def test_a_shell_injection_through_a_router_name_is_refused_before_any_job(tmp_path):
    marker = tmp_path / "PWNED"
    config = tmp_path / "evil.yaml"
    evil = f"x$(touch {marker})"
    config.write_text(f"routers: {{'{evil}': {{method: softmax_topk}}}}\n"
                      f"shakespeare_moe: {{methods: [{{router: '{evil}', k: 1}}]}}\n")
    result = dry_run("--configfile", str(config))
    assert result.returncode != 0 and "routers" in result.stdout and "does not match" in result.stdout
    assert not marker.exists()


def shell_commands() -> dict[str, str]:
    """Every rule's shell command (its string pieces joined), by the file and line it starts on."""
    commands = {}
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() == "shell:":
                pieces = []
                for piece in lines[i + 1:]:
                    if not piece.strip().startswith('"'):
                        break
                    pieces.append(piece.strip()[1:-1])
                commands[f"{path.name}:{i + 1}"] = "".join(pieces)
    return commands


def test_every_field_of_every_shell_command_is_quoted():
    commands = shell_commands()
    assert len(commands) >= 10, commands  # the parser found the rules' commands
    fields = {where: re.findall(r"(?<!\{)\{([^{}]+)\}(?!\})", command) for where, command in commands.items()}
    unquoted = {where: [f for f in found if not f.endswith(":q")] for where, found in fields.items()}
    assert not any(unquoted.values()), unquoted


# --- numbers and files the schema alone let through (second adversarial run, cases 3, 4, 9, 10) ------------------

@pytest.mark.parametrize("config, key", [
    ({"routers": {"loss_free": {"method": "loss_free", "update_rate": float("nan")}}}, "routers.loss_free.update_rate"),
    ({"routers": {"deepseek_v3": {"method": "deepseek_v3", "update_rate": float("inf")}}},
     "routers.deepseek_v3.update_rate"),
    ({"routers": {"cool": {"method": "plugin", "target": "custom_router:CosineRouter",
                           "options": {"temperature": float("-inf")}}}}, "routers.cool.options.temperature"),
    ({"toy": {"routing": {"lr": float("nan")}}}, "toy.routing.lr"),
])
def test_a_non_finite_number_is_refused_at_config_time_naming_its_key(config, key):
    refused(config, f"{key}: ")
    with pytest.raises(values.ConfigError, match="is not a finite number"):
        cfg.validate(config)


@pytest.mark.parametrize("config, key", [
    ({"pretraining": {"train": {"grad_accum": 2.0}}}, "pretraining.train.grad_accum: 2.0 is not of type 'integer'"),
    ({"toy": {"routing": {"steps": 10.0}}}, "toy.routing.steps: 10.0 is not of type 'integer'"),
    ({"recovery": {"num_experts": 4.0}}, "recovery.num_experts: 4.0 is not of type 'integer'"),
])
def test_a_whole_number_float_in_an_integer_field_is_refused(config, key):
    refused(config, key)


def test_malformed_yaml_on_the_command_line_is_one_line_naming_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("toy:\n  routing: {steps: 10\nseeds: [0]\n")
    result = subprocess.run([sys.executable, "-m", "moe_rpo", "toy", "routing", "--config", str(bad), "--out",
                             str(tmp_path / "x")], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{bad}: line 3, column 6: not valid YAML" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr


def test_a_run_directory_outside_the_checkout_works(tmp_path):
    """The docs' `snakemake --directory /scratch/run1`: the default config is found from the workflow."""
    result = dry_run("--directory", str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:]
    assert "toy_run" in result.stdout


# --- router buffers in a checkpoint (case 8) ---------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["nan", "shape"])
def test_a_checkpoint_with_a_bad_router_buffer_is_named_and_training_starts_afresh(corpus, tmp_path, capfd, damage):
    """A loss-free router's balancing bias that is NaN (or of another shape) is a corrupt checkpoint: it is named
    and the run trains from step 0, to the record an uninterrupted run gives."""
    config = cfg.validate({"shakespeare_moe": {"model": dict(TINY_MODEL), "train": dict(TINY_TRAIN),
                                               "methods": [{"router": r, "k": k} for r, k in (
                                                   ("standard", 1), ("standard", 2), ("em", 1), ("rpo", 1),
                                                   ("hash", 1), ("loss_free", 1))]},
                           "routerless": {"fixed": [{"router": "hash", "k": 1}],
                                          "learned": [{"router": "standard", "k": 1}]}})
    settings = sections.training_run_settings(config, "shakespeare_moe", "loss_free_k1")
    checkpoint = tmp_path / "run.ckpt"
    uninterrupted = scratch.run(settings, 0, corpus, checkpoint)  # leaves its last checkpoint (step 3 of 6)
    state = torch.load(checkpoint, weights_only=True)
    name = next(key for key in state["buffers"] if key.endswith("expert_bias"))
    bias = state["buffers"][name]
    state["buffers"][name] = torch.full_like(bias, float("nan")) if damage == "nan" else bias[:-1]
    torch.save(state, checkpoint)
    capfd.readouterr()
    assert scratch.run(settings, 0, corpus, checkpoint) == uninterrupted
    err = capfd.readouterr().err
    assert f"ignoring the corrupt checkpoint {checkpoint} ({name}" in err and "training from step 0" in err
