"""Data-parallel LM training under torchrun (gloo, 2 CPU processes) against one process with the same global
batch: dense, MoE (joint softmax top-2; top-1 of 16 experts with a frozen router, so that experts go unused on
a rank or on both; hash routing, a router with buffers and no parameters; loss-free balancing, whose bias follows
the global batch's loads; softmax top-2 with two micro-batches per step) and E/M alternation (EM); RPO
checkpoints written by rank 0 only and resumed exactly; the error for a global batch the ranks cannot share;
the base-model command writing its outputs once; a rule with `train.processes: 2` launching torchrun.

This file is also the worker that torchrun starts: `python tests/unit/test_ddp.py OUT_DIR`.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from moe_rpo import schema
from moe_rpo.models import GPT, GPTConfig, load_gpt
from moe_rpo.training import resume
from moe_rpo.training.batches import Batches
from moe_rpo.training.loop import train_lm
from moe_rpo.training.settings import TrainSettings

ROOT = Path(__file__).resolve().parents[2]  # also run as a torchrun worker script
VOCAB, SEED = 64, 3
# float64, so that reduction order (rank means vs one mean) leaves differences far below any real error
DTYPE, ATOL = torch.float64, 1e-9
MOE = {"moe_layers": (1,), "num_experts": 4, "k": 2}
CASES = {  # name: (GPTConfig fields, whether the routers are frozen)
    "dense": ({}, False),
    "moe": ({**MOE, "router": {"method": "softmax_topk"}}, False),
    "sparse": ({"moe_layers": (0, 1), "num_experts": 16, "k": 1, "router": {"method": "softmax_topk"}}, True),
    "em": ({**MOE, "router": {"method": "em", "e_steps": 2, "m_steps": 1}}, False),
    "hash": ({"moe_layers": (0, 1), "num_experts": 4, "k": 1, "router": {"method": "hash"}}, False),
    "rpo": ({**MOE, "router": {"method": "rpo", "weight_std": 0.2}}, False),
    "loss_free": ({**MOE, "router": {"method": "loss_free", "update_rate": 0.05}}, False),  # its bias: a buffer
}


def settings(**overrides):
    train = {"steps": 10, "batch_size": 4, "block_size": 16, "lr": 0.01, "eval_every": 5, "eval_batches": 3,
             "checkpoint_every": 4, "device": "cpu", **overrides}
    return TrainSettings.of(schema.validate_definition(train, "lm_train"))


def make_model(case):
    fields, frozen = CASES[case]
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=32, **fields))
    for router in model.routers() if frozen else []:
        router.requires_grad_(False)
    return model.to(DTYPE)


def tokens():
    rng = np.random.default_rng(0)
    return rng.integers(0, VOCAB, 4000).astype(np.uint16), rng.integers(0, VOCAB, 1000).astype(np.uint16)


def params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def train(case, grad_accum=1, **kwargs):
    model = make_model(case)
    history = train_lm(model, *tokens(), settings(grad_accum=grad_accum), seed=SEED, **kwargs)
    return {"history": history, "params": params(model),
            "buffers": {name: b.clone() for name, b in model.named_buffers()}}


def expert_usage(model):
    """A list that gets, per training step, the set of (layer, expert) that some token of this rank chose."""
    usage = []
    moes = [block.mlp for block in model.transformer.h if hasattr(block.mlp, "router")]
    for layer, moe in enumerate(moes):  # the experts' second argument: the expert of each dispatched row
        moe.experts.register_forward_pre_hook(lambda module, args, layer=layer: usage[-1].update(
            (layer, e) for e in args[1].unique().tolist()) if module.training else None)
    return usage


def worker(out: Path) -> None:
    """What each torchrun process does; saves OUT/rank<r>.pt."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    results = {name: train(name) for name in ("dense", "moe", "em", "hash", "loss_free")}
    results["moe-accum"] = train("moe", grad_accum=2)  # DDP's no_sync on the first of two micro-batches

    model, original_next = make_model("sparse"), Batches.next
    usage = expert_usage(model)
    Batches.next = lambda self: (usage.append(set()), original_next(self))[1]
    results["sparse"] = {"history": train_lm(model, *tokens(), settings(), seed=SEED), "params": params(model),
                         "usage": usage}
    Batches.next = original_next

    saves, original_save = [], resume.save_checkpoint
    resume.save_checkpoint = lambda path, state: (saves.append(state["step"]), original_save(path, state))
    for run in ("rpo-whole", "rpo-resumed"):  # the second resumes from the first's last checkpoint (step 8)
        results[run] = train("rpo", checkpoint=out / "rpo.ckpt", fingerprint="rpo")
        results[run]["next_draw"] = torch.rand(4)  # where this rank's random stream (RPO's sampling) stands
    results["saves"] = saves
    try:
        train_lm(make_model("dense"), *tokens(), settings(batch_size=3), seed=SEED)
    except ValueError as error:
        results["indivisible"] = str(error)
    torch.save(results, out / f"rank{os.environ['RANK']}.pt")


def torchrun(*args, processes=2):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(processes), *map(str, args)], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    job = torchrun(__file__, out)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-5000:]
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


def max_difference(a, b):
    return max((a[name] - b[name]).abs().max().item() for name in a)


def assert_same_history(ddp, one):
    assert [row["step"] for row in ddp] == [row["step"] for row in one] == [0, 5, 10]
    for got, want in zip(ddp, one):
        if want["train_loss"] is None:
            assert got["train_loss"] is None
        else:
            assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-6)
        for got_layer, want_layer in zip(got["layers"], want["layers"], strict=True):
            for key, value in want_layer.items():
                assert np.allclose(got_layer[key], value, atol=1e-4), key


@pytest.mark.parametrize("case", ["dense", "moe", "sparse", "em", "hash", "loss_free", "moe-accum"])
def test_two_processes_train_like_one_with_the_same_global_batch(ranks, case):
    one = train("moe", grad_accum=2) if case == "moe-accum" else train(case)
    ddp = ranks[0][case]
    assert max_difference(ddp["params"], one["params"]) < ATOL
    for name, value in one.get("buffers", {}).items():  # the balancing bias: updated from the global batch's loads
        assert all(torch.equal(rank[case]["buffers"][name], value) for rank in ranks), name
    assert_same_history(ddp["history"], one["history"])
    assert ranks[1][case]["history"] == ddp["history"]  # every rank returns the same numbers
    assert all(torch.equal(ranks[1][case]["params"][name], value) for name, value in ddp["params"].items())


def test_the_comparison_would_catch_ranks_that_train_on_the_same_rows(ranks, monkeypatch):
    """Both ranks on rank 0's rows is one process on the first half of every global batch: far off (more
    than float32's rounding differences, too)."""
    original = Batches.next

    def first_half(self):
        x, y = original(self)
        return x[:len(x) // 2], y[:len(y) // 2]

    monkeypatch.setattr(Batches, "next", first_half)
    assert max_difference(ranks[0]["moe"]["params"], train("moe")["params"]) > 1e-3


def test_experts_unused_on_one_rank_or_on_every_rank_are_exercised(ranks):
    """The sparse case covers both kinds of unused parameters that find_unused_parameters must handle."""
    steps = list(zip(ranks[0]["sparse"]["usage"], ranks[1]["sparse"]["usage"], strict=True))
    every = {(layer, e) for layer in range(2) for e in range(16)}
    assert len(steps) == 10
    assert any(a != b for a, b in steps)
    assert any(a | b != every for a, b in steps)


def test_only_rank_0_writes_checkpoints_and_every_rank_resumes(ranks):
    """RPO samples: each rank has its own random stream, and a resumed run continues every rank's exactly."""
    assert ranks[0]["saves"] == [4, 8] and ranks[1]["saves"] == []
    for rank in ranks:
        whole, resumed = rank["rpo-whole"], rank["rpo-resumed"]
        assert resumed["history"] == whole["history"]
        assert all(torch.equal(resumed["params"][name], value) for name, value in whole["params"].items())
        assert torch.equal(resumed["next_draw"], whole["next_draw"])
    assert not torch.equal(ranks[0]["rpo-whole"]["next_draw"], ranks[1]["rpo-whole"]["next_draw"])
    assert all(torch.equal(ranks[1]["rpo-whole"]["params"][name], value)
               for name, value in ranks[0]["rpo-whole"]["params"].items())


def test_a_global_batch_the_ranks_cannot_share_is_refused(ranks):
    for rank in ranks:
        assert "batch_size=3 (the global batch) is not divisible by the 2 data-parallel processes" \
            in rank["indivisible"]


@pytest.mark.slow
def test_base_model_command_under_torchrun_writes_its_outputs_once(tmp_path):
    from moe_rpo.data.prepare import prepare_corpus

    spec = schema.validate_definition({"source": "shakespeare", "tokenizer": "char", "max_documents": 20,
                                    "val_fraction": 0.3}, "corpus_spec")
    prepare_corpus(spec, tmp_path / "corpus", shards=1)
    base = {"source": "pretrain", "hf_name": "gpt2", "corpus": "shakespeare_char", "seed": 0,
            "model": schema.validate_definition({"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32},
                                             "gpt_model"),
            "train": settings(steps=6, checkpoint_every=2).as_dict()}

    def command(out):
        return ["-m", "moe_rpo", "base-model", "--corpus-dir", tmp_path / "corpus", "--out", out,
                "--settings", json.dumps(base)]

    job = torchrun(*command(tmp_path / "ddp" / "base.pt"))
    assert job.returncode == 0, job.stderr[-5000:]
    assert job.stdout.count("base model:") == 1  # rank 1 returned before writing and printing
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["base.json", "base.pt"]
    one = torchrun(*command(tmp_path / "one" / "base.pt"), processes=1)
    assert one.returncode == 0, one.stderr[-5000:]
    ddp_model, one_model = load_gpt(tmp_path / "ddp" / "base.pt"), load_gpt(tmp_path / "one" / "base.pt")
    # float32: AdamW turns rounding noise in gradients that are zero in exact arithmetic (the attention key
    # bias) into steps of up to lr; the float64 runs above show that nothing else differs
    assert max_difference(params(ddp_model), params(one_model)) < 1e-4
    records = [json.loads((tmp_path / run / "base.json").read_text()) for run in ("ddp", "one")]
    assert records[0]["val_loss"] == pytest.approx(records[1]["val_loss"], rel=1e-5)


@pytest.mark.slow
def test_a_rule_with_two_processes_runs_under_torchrun_like_one_process(tmp_path):
    """`pretraining.train.processes: 2` makes Snakemake launch the train job under torchrun (2 gloo processes
    on the CPU) and ask for 2 GPUs; the record matches the one-process job's."""
    from conftest import ENV, copy_workflow

    target = "results/lm/pretraining/standard_k2/seed0.json"
    records = {}
    for processes in (1, 2):
        (tmp_path / f"processes{processes}").mkdir()
        workdir = copy_workflow(tmp_path / f"processes{processes}")
        (workdir / "ddp.yaml").write_text(yaml.safe_dump({"pretraining": {"train": {"processes": processes}}}))
        result = subprocess.run([sys.executable, "-m", "snakemake", target, "--cores", "2", "-p", "--configfile",
                                 "config/test.yaml", "ddp.yaml"], cwd=workdir, env=ENV,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-4000:]
        launched = "torch.distributed.run --standalone --nproc_per_node 2 -m moe_rpo train pretraining"
        assert (launched in result.stdout + result.stderr) == (processes == 2)
        records[processes] = json.loads((workdir / target).read_text())
    one, two = records[1]["result"]["history"], records[2]["result"]["history"]
    assert [row["step"] for row in two] == [row["step"] for row in one]
    # float32 rounding noise only (see the base-model test above)
    assert [row["val_loss"] for row in two] == pytest.approx([row["val_loss"] for row in one], rel=1e-4)


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
