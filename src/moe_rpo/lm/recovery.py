"""GPT-2 optimal routing recovery (the paper's main LM experiment). Every chosen MLP of the base model
becomes an MoE layer whose expert 0 is the pretrained MLP and whose other experts are DIFF (random) or
SIM (perturbed copies); only the routers train. Does each router method find expert 0?

One job runs every method for one setting (diff, or sim at one scale) and one seed; every method sees
the same experts, the same training batches and the same evaluation windows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from moe_rpo.data.tokens import corpus_identity, open_tokens, sha256_file
from moe_rpo.lm.base_model import check_vocabulary
from moe_rpo.lm.oracle import oracle
from moe_rpo.models import load_gpt, recovery_model
from moe_rpo.routers.task_gradient import task_gradient
from moe_rpo.routing_metrics import routing_metrics, unit_weights
from moe_rpo.sections import ORACLE_PROBE_ROUTER, job_method, recovery_settings
from moe_rpo.training.batches import fit_routers_to_corpus
from moe_rpo.training.evaluation import evaluate
from moe_rpo.training.loop import train_lm
from moe_rpo.training.resume import fingerprint
from moe_rpo.training.settings import TrainSettings
from moe_rpo.values import Arm, layer_set_label


@dataclass(frozen=True)
class RecoveryRunSettings:
    """What a recovery job runs with (job_kinds.RECOVERY_RUN's slice of the config), typed once per job."""
    method: Arm
    """the router (its name under `routers`) and how many experts each token uses"""
    router: dict
    """the router's spec: its method and options"""
    layers: str | list[int]
    """the base model's MLPs that become MoE layers: 'all', or their indices"""
    num_experts: int
    """experts per MoE layer: the pretrained MLP (expert 0) and its distractors"""
    train: TrainSettings
    """how the routers train"""

    @classmethod
    def of(cls, settings: dict) -> RecoveryRunSettings:
        method = job_method(settings, "a recovery job")
        return cls(Arm.of(method), settings["routers"][method["router"]], settings["layers"], settings["num_experts"],
                   TrainSettings.of(settings["train"]))


@dataclass(frozen=True)
class RecoveryDesignSettings:
    """What the identifiability sweep runs with (job_kinds.RECOVERY_DESIGN's slice), typed once per job."""
    design: dict
    """recovery.design: the SIM scales it probes (`sim_scales`)"""
    num_experts: int
    """experts per MoE layer, as the recovery runs have them"""
    train: TrainSettings
    """the evaluation windows (eval_batches, block_size, batch_size) and the device"""

    @classmethod
    def of(cls, settings: dict) -> RecoveryDesignSettings:
        return cls(settings["design"], settings["num_experts"], TrainSettings.of(settings["train"]))


def layers_of(layers: str | list[int], n_layer: int) -> list[int]:
    """The MLP indices to turn into MoE layers ('all' expanded; recovery_model checks the range)."""
    return list(range(n_layer)) if layers == "all" else list(layers)


@torch.no_grad()
def recovery_metrics(out) -> dict:
    """A recovery layer's routing at each evaluation: its routing metrics and its accuracy, the share of tokens whose
    most probable expert is expert 0 (the pretrained MLP), strictly: a tie is no choice (a zero-initialised router
    would otherwise score 1 through argmax's tie-break)."""
    first_is_best = out.probs[:, 0] > out.probs[:, 1:].max(-1).values
    return {"accuracy": first_is_best.float().mean().item(), **routing_metrics(out)}


def final_metrics(history: list[dict], base_loss: float) -> dict:
    """Headline numbers of one run from its last evaluation (means over the MoE layers)."""
    last = history[-1]
    layers = last["layers"]
    return {"accuracy": float(np.mean([layer["accuracy"] for layer in layers])),
            "min_layer_accuracy": float(min(layer["accuracy"] for layer in layers)),
            "val_loss": last["val_loss"], "gap_to_base": last["val_loss"] - base_loss,
            "entropy": float(np.mean([layer["entropy"] for layer in layers])),
            "pretrained_load": float(np.mean([layer["load"][0] for layer in layers])),
            "max_load": float(np.mean([max(layer["load"]) for layer in layers]))}


def weights_apart(model, val_tokens, train: TrainSettings) -> dict:
    """How much of a trained model's loss is its learned weights rather than its routing: the validation loss
    with the same selection and weights 1/k, and the tokens' mean summed weight (1 for the pretrained expert
    alone; RPO's free weights may drift from it)."""
    with unit_weights(model) as wrappers:
        loss = evaluate(model, val_tokens, train, train.torch_device)["val_loss"]
    return {"val_loss_unit_weights": loss,
            "mean_weight": float(np.mean([wrapper.mean_weight for wrapper in wrappers.values()]))}


def frozen_base(base_path: str | Path, corpus_dir: str | Path):
    """The base model in evaluation mode with its parameters frozen, checked against the corpus's vocabulary."""
    base = load_gpt(base_path).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    check_vocabulary(base, corpus_dir)
    return base




def identifiability_sweep(settings: dict, seed: int, base_path: str | Path, corpus_dir: str | Path) -> list[dict]:
    """The per-token oracle of every layer of the base model, for DIFF and each SIM scale of
    `settings['design']['sim_scales']`: where can a router be asked to find expert 0? No router trains.

    A layer's oracle puts the other layers on expert 0, and recovery_model draws the distractors layer by
    layer in order, so layers 0..n-1 of this all-layer model have exactly the experts and oracle of a
    recovery model of MoE layers 0..n-1: one model gives every such set (tables.design_table)."""
    job = RecoveryDesignSettings.of(settings)
    base = frozen_base(base_path, corpus_dir)
    val_tokens = open_tokens(corpus_dir, "val")
    rows = []
    for setting in recovery_settings(job.design).values():
        model = recovery_model(base, list(range(base.config.n_layer)), setting.mode, setting.scale, ORACLE_PROBE_ROUTER,
                               num_experts=job.num_experts, seed=seed)
        best = oracle(model, val_tokens, job.train, job.train.torch_device)
        rows += [{"setting": setting.name, "mode": setting.mode, "scale": setting.scale, "seed": seed,
                  "layer": layer["layer"], "identifiability": layer["identifiability"],
                  "oracle_loss": layer["oracle_loss"], "expert0_loss": best["expert0_loss"],
                  "expert0_best_share": layer["best_expert_share"][0]} for layer in best["layers"]]
    return rows


def run(settings: dict, setting: dict, seed: int, base_path: str | Path, corpus_dir: str | Path,
        checkpoint: str | Path | None = None, events_dir: str | Path | None = None) -> dict:
    """Train the one method of `settings['methods']` for a setting {"name", "mode", "scale"} and seed. Its experts
    (and so its oracle), batches and evaluation windows come from the seed: every method's job sees the same. With
    `checkpoint`, a killed job resumes where it stopped; with `events_dir`, it writes TensorBoard events there."""
    job = RecoveryRunSettings.of(settings)
    train, (router, k) = job.train, job.method
    base = frozen_base(base_path, corpus_dir)
    train_tokens, val_tokens = open_tokens(corpus_dir, "train"), open_tokens(corpus_dir, "val")
    if train.block_size > base.config.block_size:
        raise ValueError(f"recovery.train.block_size: {train.block_size} exceeds the base model's "
                         f"block_size {base.config.block_size}")
    layers = layers_of(job.layers, base.config.n_layer)
    base_loss = evaluate(base, val_tokens, train, train.torch_device)["val_loss"]
    probe = recovery_model(base, layers, setting["mode"], setting["scale"], ORACLE_PROBE_ROUTER,
                           num_experts=job.num_experts, seed=seed)
    best = oracle(probe, val_tokens, train, train.torch_device)
    saved_with = fingerprint(setting=setting, seed=seed, spec=job.router, k=k, layers=layers,
                             num_experts=job.num_experts, train=train.as_dict(),
                             base=sha256_file(Path(base_path)), data=corpus_identity(corpus_dir))
    model = recovery_model(base, layers, setting["mode"], setting["scale"], job.router, k=k,
                           num_experts=job.num_experts, seed=seed)
    fit_routers_to_corpus(model, train_tokens)
    history = train_lm(model, train_tokens, val_tokens, train, seed, checkpoint=checkpoint, fingerprint=saved_with,
                       desc=f"{setting['name']} seed {seed} {job.method.slug}", events_dir=events_dir,
                       layer_metrics=recovery_metrics)
    run = {"router": router, "k": k, "history": history,
           "final": final_metrics(history, base_loss) | weights_apart(model, val_tokens, train)
                    | {"task_gradient": task_gradient(job.router, k, job.num_experts)}}
    return {"base_val_loss": base_loss, "layers": layers, "oracle": best, "runs": {job.method.slug: run}}


def records(result: dict, setting: dict, seed: int, layers) -> list[dict]:
    """One table row per method: the setting, the set of MoE layers (`layers` as configured), the seed and the
    final metrics."""
    best = result["oracle"]
    return [{"setting": setting["name"], "mode": setting["mode"], "scale": setting["scale"],
             "layers": layer_set_label(layers), "moe_layers": len(result["layers"]), "method": run["router"],
             "k": run["k"], "seed": seed, "base_val_loss": result["base_val_loss"], **run["final"],
             "identifiability": best["identifiability"], "min_layer_identifiability": best["min_layer_identifiability"],
             "oracle_loss": best["oracle_loss"], "regret": run["final"]["val_loss"] - best["oracle_loss"]}
            for run in result["runs"].values()]
