"""GPTs trained from scratch, one method per run: the Shakespeare MoE experiment (RPO vs top-1 vs top-2 vs
EM and every other router), the pretraining comparison (dense vs MoE vs MoE + RPO) and, from the same runs,
the routerless comparison. For a seed, every method of an experiment sees the same training batches and the
same evaluation windows."""
from __future__ import annotations

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
from moe_rpo.values import DENSE, Arm


def build_model(settings: dict, method: dict, vocab_size: int, seed: int) -> GPT:
    """A dense GPT or one whose `moe_layers` are MoE layers routed by `method`'s router."""
    model = dict(settings["model"], vocab_size=vocab_size)
    if method["router"] != DENSE:
        n_layer = model["n_layer"]
        layers = range(n_layer) if settings["moe_layers"] == "all" else settings["moe_layers"]
        model |= {"moe_layers": tuple(layers), "num_experts": settings["num_experts"], "k": method["k"],
                  "router": dict(settings["routers"][method["router"]]), "granularity": settings["granularity"],
                  "shared_experts": settings["shared_experts"]}
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
    if len(settings["methods"]) != 1:
        raise ValueError(f"a training run trains one method, got {len(settings['methods'])}")
    method = settings["methods"][0]
    vocab = read_meta(corpus_dir)["vocab_size"]
    train_tokens, val_tokens = open_tokens(corpus_dir, "train"), open_tokens(corpus_dir, "val")
    model = build_model(settings, method, vocab, seed)
    fit_routers_to_corpus(model, train_tokens)
    train = TrainSettings.of(settings["train"])
    history = train_lm(model, train_tokens, val_tokens, train, seed, checkpoint=checkpoint,
                       fingerprint=fingerprint(settings=settings, seed=seed, data=corpus_identity(corpus_dir)),
                       desc=f"{Arm.of(method).slug} seed {seed}", events_dir=events_dir)
    parameters = sum(p.numel() for p in model.parameters())
    return {"method": Arm.of(method).slug, "router": method["router"], "k": method["k"], "seed": seed,
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
