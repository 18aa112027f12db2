"""GPTs trained from scratch, one method per run: the Shakespeare MoE experiment (RPO vs top-1 vs top-2 vs
EM and every other router), the pretraining comparison (dense vs MoE vs MoE + RPO) and, from the same runs,
the routerless comparison. For a seed, every method of an experiment sees the same training batches and the
same evaluation windows."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from moe_rpo.data.tokens import corpus_identity, open_tokens, read_meta
from moe_rpo.models import GPT, GPTConfig
from moe_rpo.routing_metrics import (
    RouteRegret,
    Specialisation,
    misrouted,
    stability,
    summarize_layers,
)
from moe_rpo.training.batches import fit_routers_to_corpus
from moe_rpo.training.evaluation import evaluate
from moe_rpo.training.loop import train_lm
from moe_rpo.training.resume import fingerprint
from moe_rpo.training.settings import TrainSettings
from moe_rpo.sections import job_method
from moe_rpo.values import DENSE, Arm


@dataclass(frozen=True)
class TrainingRunSettings:
    """What a from-scratch training job runs with (job_kinds.TRAIN_RUN's or READING_RUN's slice), typed once per job."""
    method: Arm
    """the router (its name under `routers`, or 'dense') and how many experts each token uses"""
    router: dict | None
    """the router's spec (None for the dense GPT)"""
    model: dict
    """the GPT's shape (GPTConfig's fields but the vocabulary, which the corpus gives)"""
    moe_layers: str | list[int]
    """the blocks whose MLP is an MoE layer: 'all', or their indices"""
    num_experts: int
    """experts per MoE layer"""
    granularity: int
    """DeepSeekMoE's split of each expert into this many narrower ones (1: none)"""
    shared_experts: int
    """always-on experts of the split size per MoE layer"""
    train: TrainSettings
    """how the model trains"""

    @classmethod
    def of(cls, settings: dict) -> TrainingRunSettings:
        method = job_method(settings, "a training run")
        return cls(Arm.of(method), settings["routers"].get(method["router"]), settings["model"],
                   settings["moe_layers"], settings["num_experts"], settings["granularity"],
                   settings["shared_experts"], TrainSettings.of(settings["train"]))


def build_model(job: TrainingRunSettings, vocab_size: int, seed: int) -> GPT:
    """A dense GPT or one whose `moe_layers` are MoE layers routed by the job's router."""
    model = dict(job.model, vocab_size=vocab_size)
    if job.method.router != DENSE:
        layers = range(model["n_layer"]) if job.moe_layers == "all" else job.moe_layers
        model |= {"moe_layers": tuple(layers), "num_experts": job.num_experts, "k": job.method.k,
                  "router": dict(job.router), "granularity": job.granularity, "shared_experts": job.shared_experts}
    torch.manual_seed(seed)
    return GPT(GPTConfig(**model))


def final_metrics(model: GPT, train_tokens, val_tokens, train: TrainSettings) -> dict:
    """Losses on fixed windows of both splits, the overfitting gap, and routing quality: load balance,
    router entropy, unrouted tokens, the loss increase when every token is sent to other experts, the
    counterfactual route regret, token-id specialisation and expert co-activation (routing_metrics.py)."""
    device = train.torch_device
    token_routes, regret = Specialisation(model), RouteRegret(model)
    on_val = evaluate(model, val_tokens, train, device, observers=(token_routes, regret))
    train_loss = evaluate(model, train_tokens, train, device)["val_loss"]
    metrics = {"train_loss": train_loss, "val_loss": on_val["val_loss"],
               "generalization_gap": on_val["val_loss"] - train_loss, **summarize_layers(on_val["layers"])}
    if model.routers():
        with misrouted(model):
            metrics["misrouting_penalty"] = evaluate(model, val_tokens, train, device)["val_loss"] - on_val["val_loss"]
    else:
        metrics["misrouting_penalty"] = None
    return metrics | {"route_regret": regret.result()} | token_routes.result()


def run(settings: dict, seed: int, corpus_dir: str | Path, checkpoint: str | Path | None = None,
        events_dir: str | Path | None = None) -> dict:
    """Train the one method of `settings['methods']` for `seed`; return its record. With `checkpoint`, a killed
    run resumes from its last checkpoint; with `events_dir`, it writes TensorBoard events there."""
    job = TrainingRunSettings.of(settings)
    train = job.train
    vocab = read_meta(corpus_dir)["vocab_size"]
    train_tokens, val_tokens = open_tokens(corpus_dir, "train"), open_tokens(corpus_dir, "val")
    model = build_model(job, vocab, seed)
    fit_routers_to_corpus(model, train_tokens)
    history = train_lm(model, train_tokens, val_tokens, train, seed, checkpoint=checkpoint,
                       fingerprint=fingerprint(settings=settings, seed=seed, data=corpus_identity(corpus_dir)),
                       desc=f"{job.method.slug} seed {seed}", events_dir=events_dir)
    parameters = sum(p.numel() for p in model.parameters())
    return {"method": job.method.slug, "router": job.method.router, "k": job.method.k, "seed": seed,
            "parameters": parameters, "steps": train.steps,
            "tokens": train.steps * train.batch_size * train.block_size, "history": history,
            "final": final_metrics(model, train_tokens, val_tokens, train)}


def records(result: dict) -> list[dict]:
    """The run's table row."""
    return [{"method": result["router"], "k": result["k"], "seed": result["seed"], "parameters": result["parameters"],
             "steps": result["steps"], "tokens": result["tokens"],  # how far it trained (the claims' regime)
             "mean_train_loss": float(np.mean([row["train_loss"] for row in result["history"][1:]])),
             **stability(result["history"]),
             **{key: value for key, value in result["final"].items() if key != "coactivation"}}]  # a matrix
