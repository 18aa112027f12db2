"""Routing metrics, in one place: a routing's entropy, load and balance on a batch (every evaluation), and how a
trained MoE routes: whether it depends on its routing (losses with every token sent elsewhere), how far its routes
are from the best of sampled alternatives (counterfactual regret), how balanced, stable and specialised they are."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from moe_rpo.models import GPT
from moe_rpo.models.moe import MoE
from moe_rpo.routers import Router, RouterOutput


class Misrouted(Router):
    """Wraps a trained router and sends every token to other experts: each selection e becomes
    (e + offset) mod E with one random offset in [1, E) per token, weights unchanged. The offsets come
    from a fixed generator, so every evaluation misroutes the same way."""

    def __init__(self, router: Router, seed: int = 0):
        super().__init__(router.dim, router.num_experts, router.k)
        self.router = router
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        out = self.router(x, token_ids)
        offset = torch.randint(1, self.num_experts, (len(x), 1), generator=self.generator).to(out.experts.device)
        return RouterOutput(experts=(out.experts + offset) % self.num_experts, weights=out.weights,
                            probs=out.probs, mask=out.mask)


@contextlib.contextmanager
def replaced_routers(model: GPT, make):
    """Within the block, MoE layer i routes with make(i, its router); the routers are given back afterwards."""
    layers = {i: block.mlp for i, block in enumerate(model.transformer.h) if isinstance(block.mlp, MoE)}
    originals = {i: layer.router for i, layer in layers.items()}
    try:
        for i, layer in layers.items():
            layer.router = make(i, layer.router)
        yield model
    finally:
        for i, layer in layers.items():
            layer.router = originals[i]


def misrouted(model: GPT, seed: int = 0):
    """Within the block, every MoE layer of `model` misroutes (see Misrouted)."""
    return replaced_routers(model, lambda i, router: Misrouted(router, seed))


class UnitWeights(Router):
    """Wraps a trained router and keeps its selection but gives each token's k experts weights 1/k (summing
    to 1, as the one pretrained expert needs in recovery): the loss of the routing alone, apart from the
    learned weights. Counts the tokens' summed learned weights (`mean_weight`)."""

    def __init__(self, router: Router):
        super().__init__(router.dim, router.num_experts, router.k)
        self.router = router
        self.weight_sum, self.tokens = 0.0, 0

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> RouterOutput:
        out = self.router(x, token_ids)
        self.weight_sum += out.weights.float().sum().item()
        self.tokens += len(x)
        return RouterOutput(experts=out.experts, weights=torch.full_like(out.weights, 1 / out.weights.shape[-1]),
                            probs=out.probs, mask=out.mask)

    @property
    def mean_weight(self) -> float:
        """The mean over the tokens seen of a token's summed learned weights."""
        return self.weight_sum / self.tokens


@contextlib.contextmanager
def unit_weights(model: GPT):
    """Within the block, every MoE layer of `model` routes with unit weights (see UnitWeights); yields the
    wrappers by layer."""
    wrappers = {}

    def wrap(i, router):
        wrappers[i] = UnitWeights(router)
        return wrappers[i]

    with replaced_routers(model, wrap):
        yield wrappers


@torch.no_grad()
def routing_metrics(out: RouterOutput) -> dict[str, float | list[float]]:
    """A routing's metrics on one batch. entropy: mean over tokens of the entropy (nats) of the router's probabilities;
    load: share of all dispatched (token, expert) pairs that went to each expert;
    unrouted: share of tokens with no dispatched expert (capacity limits, expert choice);
    max_vio: the batch's MaxVio, (largest load - mean load) / mean load (Wang et al. 2024: 0 = balanced)."""
    load = out.load()
    return {
        "entropy": torch.special.entr(out.probs).sum(-1).mean().item(),
        "load": load.tolist(),
        "unrouted": (~out.active().any(-1)).float().mean().item(),
        "max_vio": max_violation(load),
    }


def max_violation(load) -> float:
    """MaxVio of a load vector (shares of the dispatched pairs): (max - mean) / mean, 0 when nothing was
    dispatched."""
    load = torch.as_tensor(load, dtype=torch.float64)
    mean = load.mean()
    return float((load.max() - mean) / mean) if mean > 0 else 0.0


def gini(load) -> float:
    """Gini coefficient of a load vector: 0 when every expert has the same load, (E - 1) / E when one has all."""
    load = np.asarray(load, dtype=float)
    if load.sum() == 0:
        return 0.0
    return float(np.abs(load[:, None] - load[None, :]).sum() / (2 * len(load) ** 2 * load.mean()))


def max_load_ratio(load) -> float:
    """E times the largest expert's share of the load: 1 when balanced, E when one expert takes everything."""
    return len(load) * max(load)


DEAD_EXPERT_LOAD = 0.01  # an expert with less than 1% of the dispatched (token, expert) pairs is dead


def summarize_layers(layers: list[dict]) -> dict:
    """Means over MoE layers of the evaluation's routing: load balance as E * the largest expert's load
    (1 = balanced, E = one expert takes everything), MaxVio per batch (averaged over the evaluation batches) and
    global (of the load over all of them), the load's Gini coefficient, the share of dead experts (under 1% of
    the dispatched pairs), router entropy (nats) and the share of tokens no expert processed; None for a dense
    model."""
    keys = ("max_load_ratio", "max_vio_batch", "max_vio_global", "gini", "dead_experts", "entropy", "unrouted")
    if not layers:
        return dict.fromkeys(keys)
    per_layer = [{"max_load_ratio": max_load_ratio(layer["load"]), "max_vio_batch": layer["max_vio"],
                  "max_vio_global": max_violation(layer["load"]), "gini": gini(layer["load"]),
                  "dead_experts": float(np.mean(np.asarray(layer["load"]) < DEAD_EXPERT_LOAD)),
                  "entropy": layer["entropy"], "unrouted": layer["unrouted"]} for layer in layers]
    return {key: float(np.mean([layer[key] for layer in per_layer])) for key in keys}


class RouteRegret:
    """Route regret of a frozen MoE, from the batches evaluate() hands it (an observer: the evaluation's pass gives
    the model's own losses). result(): per token, its loss under the model's own routing minus the lowest of its
    losses under `samples` alternative routings of equal compute (every MoE layer sends every token to other
    experts, same k and weights: Misrouted with seeds 0..samples-1), floored at 0, and the mean over tokens (nats).
    0: no sampled alternative beats the router for any token. The alternatives reroute all tokens at once, so a
    token's context is rerouted too. None for a dense model."""

    def __init__(self, model: GPT, samples: int = 4):
        self.model, self.samples, self.regrets = model, samples, []

    def __call__(self, x: torch.Tensor, y: torch.Tensor, out) -> None:
        if not out.routing:
            return
        own = out.token_loss.float()
        best = torch.full_like(own, float("inf"))
        for seed in range(self.samples):
            with misrouted(self.model, seed):
                best = torch.minimum(best, self.model(x, y).token_loss.float())
        self.regrets.append((own - best).clamp(min=0).mean().item())

    def result(self) -> float | None:
        return float(np.mean(self.regrets)) if self.regrets else None


class Specialisation:
    """Counts of which experts each token id meets, gathered from the batches evaluate() hands it (an observer:
    one pass gives the loss and these). result(): means over MoE layers of token-id specialisation, the share of
    a token id's occurrences dispatched to its most used expert, over all occurrences (1: every id always meets
    the same expert, as under hashing); and the co-activation matrix C[i][j], the share of the tokens dispatched
    to expert i that expert j also processes (OLMoE; the diagonal is 1 for a used expert). None for a dense model."""

    def __init__(self, model: GPT):
        routers = model.routers()
        experts = routers[0].num_experts if routers else 0
        self.per_token = torch.zeros(len(routers), model.config.vocab_size, experts, dtype=torch.float64)
        self.together = torch.zeros(len(routers), experts, experts, dtype=torch.float64)
        self.occurrences = 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor, out) -> None:
        """x: [B, T] token ids; out: the model's output on them (its routing per MoE layer)."""
        ids = x.reshape(-1).cpu()
        for layer, routing in enumerate(out.routing):
            chosen = routing.selected().cpu().double()
            self.per_token[layer].index_add_(0, ids, chosen)
            self.together[layer] += chosen.T @ chosen
        self.occurrences += len(ids)

    def result(self) -> dict:
        if not len(self.together):
            return {"token_specialisation": None, "coactivation": None}
        used = self.together.diagonal(dim1=1, dim2=2).clamp(min=1).unsqueeze(-1)
        return {"token_specialisation": (self.per_token.max(-1).values.sum(-1) / self.occurrences).mean().item(),
                "coactivation": (self.together / used).mean(0).tolist()}


def stability(history: list[dict]) -> dict:
    """From a training history's evaluations (train_lm): the saturation at the evaluation nearest to half of
    training (the share of the final routing it already chose) and the mean flip rate between consecutive
    evaluations; None for a dense model."""
    rows = [row for row in history if "saturation" in row]
    if not rows:
        return {"saturation_mid": None, "flip_rate_mean": None}
    middle = min(rows, key=lambda row: abs(row["step"] - history[-1]["step"] / 2))
    return {"saturation_mid": middle["saturation"],
            "flip_rate_mean": float(np.mean([row["flip_rate"] for row in rows if "flip_rate" in row]))}
