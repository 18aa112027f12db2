"""LM training and the routing-recovery experiment: determinism, exact resume after a kill, NaN and
bad-input errors, the base model from Hugging Face, and the recovery claims."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, Killed, kill_at_batch

from moe_rpo import config as cfg
from moe_rpo import schema, sections, values
from moe_rpo.claims import recovery_claims
from moe_rpo.data.prepare import prepare_corpus
from moe_rpo.data.tokens import open_tokens
from moe_rpo.experiments import EXPERIMENTS
from moe_rpo.io import read_json, write_json
from moe_rpo.lm import recovery
from moe_rpo.lm.base_model import build_base, check_vocabulary
from moe_rpo.lm.oracle import oracle
from moe_rpo.models import GPT, GPTConfig, load_gpt, recovery_model, save_gpt
from moe_rpo.tables import design_table, recovery_tables
from moe_rpo.training import loop
from moe_rpo.training.batches import Batches
from moe_rpo.training.device import pick_device
from moe_rpo.training.loop import lr_at, train_lm
from moe_rpo.training.settings import TrainSettings

VOCAB = 64


def settings(**overrides):
    """Recovery training settings with the schema's defaults, small enough for a unit test."""
    train = {"steps": 9, "batch_size": 4, "block_size": 16, "eval_every": 3, "eval_batches": 2,
             "checkpoint_every": 3, "device": "cpu", **overrides}
    return TrainSettings.of(schema.validate_definition(train, "lm_train"))


def tiny_gpt(seed=0, vocab=VOCAB):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=32, n_layer=2, n_head=2, n_embd=16))


@pytest.fixture(scope="module")
def tokens():
    """A learnable sequence (each token is the previous one plus 1, with 10% random tokens)."""
    rng = np.random.default_rng(0)
    ids = np.arange(6000) % VOCAB
    noisy = rng.random(6000) < 0.1
    ids[noisy] = rng.integers(0, VOCAB, noisy.sum())
    return ids[:5000].astype(np.uint16), ids[5000:].astype(np.uint16)


def rpo_recovery(seed=0):
    base = tiny_gpt()
    for p in base.parameters():
        p.requires_grad_(False)
    return recovery_model(base, [0, 1], "sim", 0.3, {"method": "rpo", "weight_std": 0.2}, seed=seed)


def test_weight_decay_on_weight_matrices_only_the_stacked_experts_included():
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8, moe_layers=(0,)))
    params = dict(model.named_parameters())
    decayed, plain = loop.make_optimizer(params, settings(lr=1e-3, weight_decay=0.1)).param_groups
    names = {id(p): name for name, p in params.items()}
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {"transformer.h.0.mlp.experts.c_fc", "transformer.h.0.mlp.experts.c_proj"} <= {names[id(p)] for p in decayed["params"]}
    assert {"transformer.h.0.mlp.experts.c_fc_bias", "transformer.h.0.mlp.experts.c_proj_bias"} <= {
        names[id(p)] for p in plain["params"]}
    assert all(p.dim() == 1 or names[id(p)].endswith("bias") for p in plain["params"])


def test_adamw_is_fused_on_a_gpu_only_and_fused_takes_the_same_step():
    """The fused kernel (the default when every parameter is on a GPU, as in nanoGPT) updates as the reference loop
    does; the CPU keeps the reference loop, so CPU results do not change."""
    steps = {}
    for fused in (None, True):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8, moe_layers=(0,)))
        optimizer = loop.make_optimizer(dict(model.named_parameters()), settings(lr=1e-2, weight_decay=0.1), fused)
        assert optimizer.defaults["fused"] is bool(fused)
        for _ in range(3):
            idx = torch.randint(0, 20, (2, 8), generator=torch.Generator().manual_seed(1))
            optimizer.zero_grad()
            model(idx, targets=idx).loss.backward()
            optimizer.step()
        steps[fused] = [p.detach().clone() for p in model.parameters()]
    for reference, fused in zip(steps[None], steps[True]):
        torch.testing.assert_close(fused, reference, rtol=1e-4, atol=1e-5)  # 0.1% of a step of lr 1e-2


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    s = settings(steps=100, warmup_steps=10, lr=0.01, min_lr_ratio=0.1)
    assert lr_at(0, s) == pytest.approx(0.001) and lr_at(9, s) == pytest.approx(0.01)
    assert lr_at(10, s) == pytest.approx(0.01) and lr_at(100, s) == pytest.approx(0.001)
    assert all(lr_at(i, s) >= lr_at(i + 1, s) for i in range(10, 100))


def test_training_is_deterministic_for_a_seed(tokens):
    runs = [train_lm(rpo_recovery(), *tokens, settings(), seed=1) for _ in range(2)]
    assert runs[0] == runs[1]
    other = train_lm(rpo_recovery(), *tokens, settings(), seed=2)
    assert other != runs[0]
    assert [row["step"] for row in runs[0]] == [0, 3, 6, 9]


def test_pretraining_lowers_the_loss(tokens):
    history = train_lm(tiny_gpt(), *tokens, settings(steps=30, lr=0.01, eval_every=30), seed=0)
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert history[0]["layers"] == []  # a dense model has no routing metrics


@pytest.mark.parametrize("make_model", [rpo_recovery, tiny_gpt], ids=["rpo-recovery", "dense"])
def test_resume_after_a_kill_gives_the_uninterrupted_result(tokens, tmp_path, monkeypatch, make_model):
    """Die at step 7 (after the checkpoint at step 6), restart: the same history as one uninterrupted run."""
    uninterrupted = train_lm(make_model(), *tokens, settings(), seed=3)
    checkpoint = tmp_path / "run.pt"
    kill_at_batch(monkeypatch, 8)
    with pytest.raises(Killed):
        train_lm(make_model(), *tokens, settings(), seed=3, checkpoint=checkpoint, fingerprint="a")
    assert torch.load(checkpoint, weights_only=False)["step"] == 6
    monkeypatch.undo()
    resumed = train_lm(make_model(), *tokens, settings(), seed=3, checkpoint=checkpoint, fingerprint="a")
    assert resumed == uninterrupted


def test_training_writes_tensorboard_events_that_tensorboard_reads_back(tokens, tmp_path, monkeypatch):
    """Each evaluation's losses, learning rate and router metrics, once per step also across a kill and resume."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, checkpoint = tmp_path / "events", tmp_path / "run.pt"
    kill_at_batch(monkeypatch, 8)
    with pytest.raises(Killed):
        train_lm(rpo_recovery(), *tokens, settings(eval_every=1), seed=3, checkpoint=checkpoint, fingerprint="a",
                 events_dir=folder)  # evaluated up to step 7, saved at step 6
    monkeypatch.undo()
    history = train_lm(rpo_recovery(), *tokens, settings(eval_every=1), seed=3, checkpoint=checkpoint, fingerprint="a",
                       events_dir=folder)
    events = EventAccumulator(str(folder))
    events.Reload()
    assert {"loss/val", "loss/train", "lr", "router/layer0/entropy", "router/layer1/max_load"} <= set(
        events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss/val")] == [row["step"] for row in history] == list(range(10))
    assert [e.value for e in events.Scalars("loss/val")] == pytest.approx([row["val_loss"] for row in history])
    assert [e.step for e in events.Scalars("loss/train")] == list(range(1, 10))  # step 0 has no training loss


def test_checkpoint_of_other_settings_is_ignored(tokens, tmp_path, monkeypatch):
    checkpoint = tmp_path / "run.pt"
    train_lm(rpo_recovery(), *tokens, settings(steps=6, checkpoint_every=3), seed=3, checkpoint=checkpoint,
             fingerprint="old")
    fresh = train_lm(rpo_recovery(), *tokens, settings(), seed=3)
    assert train_lm(rpo_recovery(), *tokens, settings(), seed=3, checkpoint=checkpoint, fingerprint="new") == fresh


def test_nan_loss_stops_with_a_clear_error(tokens):
    model = tiny_gpt()
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="evaluation after step 0: non-finite evaluation loss"):
        train_lm(model, *tokens, settings(eval_every=100), seed=0)


def test_a_non_finite_training_loss_stops_the_run_before_the_next_evaluation_or_checkpoint(tokens, tmp_path,
                                                                                           monkeypatch):
    """Losses are read from the device only before an evaluation or a checkpoint (no host sync per step): a
    total loss that turns non-finite at step 4 stops the run at the next of those (after step 6), naming step 4,
    and the checkpoint keeps step 3."""
    base = tiny_gpt()
    for p in base.parameters():
        p.requires_grad_(False)
    model = recovery_model(base, [0, 1], "sim", 0.3, {"method": "switch"})
    router_class, calls = type(model.routers()[0]), []
    loss_terms = router_class.loss_terms

    def nan_at_step_4(self, routing, token_loss, baseline=None):
        calls.append(None)
        terms = loss_terms(self, routing, token_loss, baseline)
        return terms | ({"broken": torch.tensor(float("nan"))} if (len(calls) - 1) // 2 == 4 else {})

    monkeypatch.setattr(router_class, "loss_terms", nan_at_step_4)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 4 \(joint phase\): loss [0-9.]+, terms .*"
                                                 r"'layer0/broken': nan"):
        train_lm(model, *tokens, settings(), seed=0, checkpoint=checkpoint, fingerprint="a")
    assert len(calls) == 2 * 6 and torch.load(checkpoint, weights_only=False)["step"] == 3


def test_a_model_with_nothing_to_train_is_only_measured(tokens):
    """A frozen model (as with a parameter-free router in recovery) keeps its weights; the history still
    has the losses of every evaluation step."""
    frozen = tiny_gpt()
    for p in frozen.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    history = train_lm(frozen, *tokens, settings(steps=4, eval_every=2), seed=0)
    assert [row["step"] for row in history] == [0, 2, 4]
    assert history[1]["val_loss"] == history[2]["val_loss"] == history[0]["val_loss"]
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())


def test_bad_training_inputs_are_refused(tokens):
    with pytest.raises(ValueError, match="too few for one window"):
        Batches(np.zeros(10, dtype=np.uint16), 2, 16, 0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no GPU is available"):
            pick_device("cuda")
    assert pick_device("auto").type in ("cpu", "cuda")


@pytest.mark.parametrize("change,message", [
    ({"claims": {"recovery_sim_scale": 0.5}}, "claims.recovery_sim_scale: 0.5 is not one of recovery.sim_scales"),
    ({"recovery": {"corpus": "nowhere"}}, "recovery.corpus: 'nowhere' is not defined under 'corpora'"),
    ({"recovery": {"layers": [7]}}, "recovery.layers: [7] names a layer the base model (n_layer=4) does not have"),
    ({"recovery": {"methods": [{"router": "magic", "k": 1}]}}, "recovery.methods.0: router 'magic' is not defined"),
    ({"recovery": {"train": {"block_size": 4096}}}, "recovery.train.block_size: 4096 exceeds the base model's"),
    ({"recovery": {"train": {"device": "tpu"}}}, "recovery.train.device: 'tpu' is not one of"),
])
def test_bad_lm_config_is_named(change, message):
    with pytest.raises(values.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        cfg.validate(change)


# ---- the recovery experiment end to end on a tiny setup ---------------------------------------

@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A prepared char corpus (20 Shakespeare scenes) and a small random 'base model' for it."""
    root = tmp_path_factory.mktemp("recovery")
    spec = schema.validate_definition({"source": "shakespeare", "tokenizer": "char", "max_documents": 20,
                                    "val_fraction": 0.3}, "corpus_spec")
    meta = prepare_corpus(spec, root / "corpus", shards=1)
    save_gpt(tiny_gpt(vocab=meta["vocab_size"]), root / "base.pt")
    conf = cfg.validate({
        "recovery": {"layers": [0, 1], "methods": [{"router": "standard", "k": 1}, {"router": "rpo", "k": 1}],
                     "train": {"steps": 12, "batch_size": 4, "block_size": 16, "eval_every": 4, "eval_batches": 2,
                               "checkpoint_every": 2, "device": "cpu"}},
        "benchmark": {"methods": [{"router": "rpo", "k": 1}]}})  # no other methods in the benchmark's settings
    return root, {slug: sections.recovery_run_settings(conf, "diff", slug) for slug in ("standard_k1", "rpo_k1")}


def test_each_recovery_job_trains_its_one_method_on_the_experts_every_method_sees(tiny_setup, tmp_path):
    root, jobs = tiny_setup
    setting = sections.recovery_settings({"sim_scales": [0.3]})["sim0.3"].as_dict()
    results = {slug: recovery.run(settings, setting, 0, root / "base.pt", root / "corpus", tmp_path / f"{slug}.ckpt")
               for slug, settings in jobs.items()}
    assert [list(result["runs"]) for result in results.values()] == [["standard_k1"], ["rpo_k1"]]
    standard_run, rpo_run = results.values()
    assert standard_run["oracle"] == rpo_run["oracle"] and standard_run["base_val_loss"] == rpo_run["base_val_loss"]
    assert standard_run["layers"] == [0, 1]
    rows = [row for slug, result in results.items()
            for row in recovery.records(result, setting, 0, jobs[slug]["layers"])]
    assert [row["method"] for row in rows] == ["standard", "rpo"]
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and row["gap_to_base"] == pytest.approx(row["val_loss"] - row["base_val_loss"])
    best = standard_run["oracle"]
    assert [layer["layer"] for layer in best["layers"]] == [0, 1] and best["oracle_loss"] <= best["expert0_loss"]
    assert best["expert0_loss"] == pytest.approx(standard_run["base_val_loss"], abs=1e-5)  # all expert 0 = the base
    for row in rows:
        assert row["regret"] == pytest.approx(row["val_loss"] - best["oracle_loss"])
        assert row["identifiability"] == best["identifiability"]
    standard, rpo = rows
    assert 0 < standard["mean_weight"] < 1  # raw softmax probabilities of the top expert
    assert rpo["mean_weight"] != 1 and rpo["val_loss_unit_weights"] != rpo["val_loss"]  # its free weights moved


def test_identifiability_sweep_gives_each_layer_set_the_oracle_of_its_recovery_model(tiny_setup):
    root, jobs = tiny_setup
    run_settings = jobs["standard_k1"]
    rows = recovery.identifiability_sweep(dict(run_settings, design={"sim_scales": [0.3, 3.0]}), 0,
                                          root / "base.pt", root / "corpus")
    assert [(r["setting"], r["layer"]) for r in rows] == [(s, layer) for s in ("diff", "sim0.3", "sim3")
                                                         for layer in (0, 1)]
    base = load_gpt(root / "base.pt")
    spec = run_settings["routers"]["standard"]
    for mode, scale, name in (("diff", 0.0, "diff"), ("sim", 3.0, "sim3")):
        alone = oracle(recovery_model(base, [0], mode, scale, spec, seed=0), open_tokens(root / "corpus", "val"),
                       TrainSettings.of(run_settings["train"]), torch.device("cpu"))
        swept = next(r for r in rows if r["setting"] == name and r["layer"] == 0)
        assert swept["identifiability"] == alone["identifiability"]
        assert swept["oracle_loss"] == alone["layers"][0]["oracle_loss"]


def test_design_table_takes_each_layer_set_as_the_claims_do():
    rows = [{"setting": "sim1", "mode": "sim", "scale": 1.0, "seed": seed, "layer": layer,
             "identifiability": value, "oracle_loss": 2.0 - value, "expert0_loss": 2.0, "expert0_best_share": value}
            for seed, values in ((0, (0.95, 0.5)), (1, (0.91, 0.7))) for layer, value in enumerate(values)]
    table = design_table(pd.DataFrame(rows), threshold=0.9)
    assert list(table["layers"]) == ["0", "0-1 (all)"] and list(table["seeds"]) == [2, 2]
    assert table["identifiability"].tolist() == pytest.approx([0.93, 0.765])
    assert table["identifiability_min"].tolist() == pytest.approx([0.91, 0.725])
    assert table["identifiable"].tolist() == [True, False]
    assert table["oracle_loss"].tolist() == pytest.approx([1.07, 1.07])  # the best layer of the set


def test_recovery_tables_hold_the_oracle_per_layer_the_regret_per_method_and_the_layer_sweep(tiny_setup, tmp_path):
    root, jobs = tiny_setup
    records = [tmp_path / "design.json"]
    write_json(records[0], {"experiment": "recovery_design", "records": recovery.identifiability_sweep(
        dict(jobs["standard_k1"], design={"sim_scales": [0.3]}), 0, root / "base.pt", root / "corpus")})
    setting = sections.recovery_settings({"sim_scales": [0.3]})["sim0.3"].as_dict()
    one_layer = dict(jobs["rpo_k1"], layers=[0])  # a layer-sweep job's
    for seed, settings in ((0, jobs["standard_k1"]), (0, jobs["rpo_k1"]), (1, jobs["standard_k1"]),
                           (1, jobs["rpo_k1"]), (0, one_layer), (1, one_layer)):
        result = recovery.run(settings, setting, seed, root / "base.pt", root / "corpus", tmp_path / "run.ckpt")
        records.append(tmp_path / f"run{len(records)}.json")
        write_json(records[-1], {"setting": setting, "seed": seed, "result": result, "settings": settings,
                                 "records": recovery.records(result, setting, seed, settings["layers"])})
    view = {"methods": ["standard_k1", "rpo_k1"], "threshold": 0.9, "layers": "0_1", "sweep_methods": ["rpo_k1"],
            "sweep_settings": ["sim0.3"]}
    tables = recovery_tables(EXPERIMENTS["recovery"], records, view)
    assert set(tables) == set(EXPERIMENTS["recovery"].tables)
    oracle, regret = tables["lm_recovery_oracle"], tables["lm_recovery_regret"]
    assert list(oracle["layer"]) == [0, 1] and (oracle["seeds"] == 2).all()  # the claims' layers only
    assert ((oracle["identifiability_min"] <= oracle["identifiability"])
            & (oracle["identifiability"] <= oracle["identifiability_max"])).all()
    assert sorted(regret["method"]) == ["rpo", "standard"] and (regret["regret"] >= regret["regret_to_expert0"] - 1e-5).all()
    assert set(tables["lm_recovery_seeds"]["layers"]) == {"0_1"} and len(tables["lm_recovery_seeds"]) == 4
    sweep = tables["lm_recovery_layers"]
    assert list(sweep["layers"]) == ["0", "0_1"] and list(sweep["moe_layers"]) == [1, 2] and set(sweep["method"]) == {"rpo"}
    assert (sweep["seeds"] == 2).all() and (sweep["regret_min"] <= sweep["regret"]).all()
    # methods the jobs ran only for the benchmark stay out of the experiment's own tables
    own = recovery_tables(EXPERIMENTS["recovery"], records, dict(view, methods=["rpo_k1"]))
    assert list(tables["lm_recovery_design"]["setting"]) == ["diff", "diff", "sim0.3", "sim0.3"]
    assert set(own["lm_recovery_seeds"]["method"]) == set(own["lm_recovery_regret"]["method"]) == {"rpo"}


def test_recovery_refuses_a_corpus_the_model_cannot_embed(tiny_setup, tmp_path):
    root, jobs = tiny_setup
    run_settings = jobs["standard_k1"]
    save_gpt(tiny_gpt(vocab=10), tmp_path / "small.pt")
    setting = sections.recovery_settings({"sim_scales": [0.3]})["diff"].as_dict()
    with pytest.raises(ValueError, match="token ids but the model embeds only 10"):
        recovery.run(run_settings, setting, 0, tmp_path / "small.pt", root / "corpus", tmp_path / "run.ckpt")


def test_killed_recovery_job_resumes_to_the_same_record(tiny_setup, tmp_path):
    """kill -9 the CLI job once a checkpoint exists, rerun it: the same records as an uninterrupted job."""
    root, jobs = tiny_setup
    run_settings = {**jobs["rpo_k1"], "train": {**jobs["rpo_k1"]["train"], "steps": 60, "checkpoint_every": 5}}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}

    def command(out):
        return [sys.executable, "-m", "moe_rpo", "recovery", "sim0.3", "rpo_k1", "--seed", "0", "--settings",
                json.dumps(run_settings), "--base", str(root / "base.pt"), "--corpus-dir", str(root / "corpus"),
                "--out", str(out)]

    subprocess.run(command(tmp_path / "whole.json"), env=env, check=True, capture_output=True)
    job = subprocess.Popen(command(tmp_path / "killed.json"), env=env, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed.ckpt"
    deadline = time.time() + 120
    while not checkpoint.exists() and job.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert job.poll() is None, "the job finished before it could be killed; make it longer"
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert not (tmp_path / "killed.json").exists() and checkpoint.exists()
    subprocess.run(command(tmp_path / "killed.json"), env=env, check=True, capture_output=True)
    assert read_json(tmp_path / "killed.json")["records"] == read_json(tmp_path / "whole.json")["records"]
    assert not checkpoint.exists()


def test_every_benchmarked_router_recovers_and_resumes_in_one_process(tiny_setup, tmp_path, monkeypatch):
    """Every router the smoke config benchmarks (all built-in ones and the plugin) through a SIM recovery run:
    records in range, and a run killed after its first checkpoint resumes to the same result, history included.
    The smoke pipeline gives only a few of them a recovery job of their own (each job costs seconds of start-up)."""
    root, _ = tiny_setup
    smoke = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    conf = cfg.validate({
        "routers": smoke["routers"], "benchmark": {"methods": smoke["benchmark"]["methods"],
                                                   "recovery": {"settings": ["sim0.3"]}},
        "recovery": {"layers": [0, 1], "sim_scales": [0.3],
                     "train": {"steps": 6, "batch_size": 4, "block_size": 16, "eval_every": 3, "eval_batches": 2,
                               "checkpoint_every": 3, "device": "cpu"}}})
    methods = sections.recovery_methods(conf, "sim0.3")
    assert {m["router"] for m in methods} == set(conf["routers"]) and len(methods) == 25
    setting = sections.recovery_settings(conf["recovery"])["sim0.3"].as_dict()
    for slug in (values.Arm.of(m).slug for m in methods):
        run_settings = sections.recovery_run_settings(conf, "sim0.3", slug)

        def run(checkpoint):
            return recovery.run(run_settings, setting, 0, root / "base.pt", root / "corpus", checkpoint)

        whole = run(tmp_path / f"{slug}.ckpt")
        kill_at_batch(monkeypatch, 5)
        with pytest.raises(Killed):
            run(tmp_path / f"{slug}-killed.ckpt")
        monkeypatch.undo()
        assert torch.load(tmp_path / f"{slug}-killed.ckpt", weights_only=False)["step"] == 3, slug
        assert run(tmp_path / f"{slug}-killed.ckpt") == whole, slug
        for row in recovery.records(whole, setting, 0, run_settings["layers"]):
            assert 0 <= row["accuracy"] <= 1 and np.isfinite(row["val_loss"]), (slug, row)


def test_base_model_from_hugging_face(tmp_path, tiny_setup):
    from transformers import GPT2Config, GPT2LMHeadModel

    root, _ = tiny_setup
    hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=100, n_positions=64,
                                    bos_token_id=0, eos_token_id=0))
    hf.save_pretrained(tmp_path / "hf")
    base_settings = cfg.validate({"base_model": {"source": "huggingface", "hf_name": str(tmp_path / "hf"),
                                                 "train": {"batch_size": 4, "block_size": 16, "eval_batches": 2,
                                                           "device": "cpu"}}})["base_model"]
    model, record = build_base(base_settings, root / "corpus")
    assert record["source"] == "huggingface" and record["parameters"] == sum(p.numel() for p in model.parameters())
    assert record["val_loss"] == pytest.approx(np.log(100), rel=0.2)  # an untrained model is near uniform
    with pytest.raises(ValueError, match="token ids but the model embeds only"):
        check_vocabulary(tiny_gpt(vocab=5), root / "corpus")


# ---- claims ----------------------------------------------------------------------------------

def recovery_table(diff_standard, sim_rpo, sim_standard, identifiability=1.0):
    rows = []
    for seed in range(3):
        diff = diff_standard[seed] if isinstance(diff_standard, list) else diff_standard
        rows += [{"setting": "diff", "method": "standard", "k": 1, "seed": seed, "accuracy": diff},
                 {"setting": "sim0.3", "method": "rpo", "k": 1, "seed": seed, "accuracy": sim_rpo},
                 {"setting": "sim0.3", "method": "standard", "k": 1, "seed": seed, "accuracy": sim_standard}]
    return pd.DataFrame(rows).assign(identifiability=identifiability)


@pytest.mark.parametrize("values,verdicts", [
    ((0.95, 0.92, 0.4), ["reproduced", "reproduced"]),
    ((0.5, 0.92, 0.4), ["refuted", "reproduced"]),
    ((0.95, 0.5, 0.4), ["reproduced", "refuted"]),
    ((0.95, 0.95, 0.93), ["reproduced", "refuted"]),  # standard also recovers: "only RPO" fails
    (([0.85, 0.95, 0.9], 0.92, 0.4), ["inconclusive", "reproduced"]),  # the seeds disagree about 0.9
])
def test_recovery_claim_verdicts_follow_the_numbers(values, verdicts):
    thresholds = cfg.validate({})["claims"] | {"recovery_accuracy": 0.9, "recovery_sim_scale": 0.3}
    claims = recovery_claims(recovery_table(*values), thresholds)
    assert [c["verdict"] for c in claims] == verdicts
    rpo = claims[1]["comparisons"][0]
    assert rpo["label"] == "rpo k=1 sim0.3 accuracy" and rpo["value"] == pytest.approx(values[1]) and rpo["n"] == 3


def test_a_recovery_claim_is_made_only_where_expert_0_is_identifiable():
    """Where expert 0 is the per-token best for fewer tokens than the claim asks a router to send it, the claim
    cannot be answered, whatever the accuracies."""
    thresholds = cfg.validate({})["claims"] | {"recovery_accuracy": 0.9, "recovery_sim_scale": 0.3}
    for claim in recovery_claims(recovery_table(0.95, 0.92, 0.4, identifiability=0.6), thresholds):
        assert claim["verdict"] == "inconclusive"
        assert claim["reason"].startswith("not identifiable: expert 0 is the per-token best for 60.0% of")
        assert claim["reason"].endswith("(the intervals alone: reproduced)")
