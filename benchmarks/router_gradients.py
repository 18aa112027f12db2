"""Why do sampling routers learn slowly in recovery? Their gradient at initialisation, on the recovery setup.

For each set of MoE layers, setting (DIFF / SIM) and method, over a few training batches and several
independent draws of the sampled routes per batch, with the recovery section's batch size and clip threshold:

- the gradient norm of each router parameter group (RPO: the selection policy `gate` and the weight policy
  `weight_policy`), and how often the total exceeds the joint clip threshold `recovery.train.grad_clip`
  (clip_grad_norm_ then scales every group down together, the weight policy's gradient included);
- the gradient's signal-to-noise ratio over route draws on the same batch, ||E g|| / sqrt(E ||g - E g||^2)
  (1: one draw's gradient is as much noise as signal; a deterministic router has no draw-to-draw noise);
- for sampling routers, under the `batch_mean` and `greedy` REINFORCE baselines, the standard deviation of
  the advantage (a token's loss minus its baseline): the scale of the noise the policy gradient carries.

Every method is measured the same way, at the same initialisation, batches and clip rule.

    python benchmarks/router_gradients.py --base results/lm/base/model.pt --corpus-dir results/data/shakespeare_char
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from moe_rpo import config as cfg  # noqa: E402
from moe_rpo.data.tokens import open_tokens  # noqa: E402
from moe_rpo.lm.recovery import frozen_base, layers_of  # noqa: E402
from moe_rpo.models import recovery_model  # noqa: E402
from moe_rpo.routers import METHODS  # noqa: E402
from moe_rpo.routers.policy import leave_one_out_baseline  # noqa: E402
from moe_rpo.training.batches import Batches, fit_routers_to_corpus  # noqa: E402
from moe_rpo.training.device import configure_torch  # noqa: E402
from moe_rpo.training.loop import greedy_loss  # noqa: E402
from moe_rpo.values import Arm, RecoverySetting  # noqa: E402


def router_gradient(model, x, y, baseline_kind: str, draw: int) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """One draw of the routers' gradient on a batch, by parameter group, and each router's advantages."""
    routers = model.routers()
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    model.train()
    torch.manual_seed(draw)
    samples = any(router.samples for router in routers)
    baseline = greedy_loss(model, routers, x, y, contextlib.nullcontext()) if baseline_kind == "greedy" and samples else None
    out = model(x, y)
    total, advantages = out.loss, []
    for router, routing in zip(routers, out.routing):
        total = total + sum(router.loss_terms(routing, out.token_loss, baseline).values(), torch.zeros(()))
        if routing.log_prob is not None:
            loss = out.token_loss.detach()
            advantages.append(loss - (leave_one_out_baseline(loss) if baseline is None else baseline))
    grads = torch.autograd.grad(total, list(params.values()), allow_unused=True)
    groups: dict[str, list[torch.Tensor]] = {}
    for (name, p), g in zip(params.items(), grads):
        groups.setdefault(name.split(".")[-2], []).append(torch.zeros(p.numel()) if g is None else g.flatten())
    return {group: torch.cat(parts) for group, parts in groups.items()}, advantages


def measure(model, batches: Batches, n_batches: int, n_draws: int, baseline_kind: str, clip: float) -> dict:
    norms, totals, snrs, advantage_std = {}, [], {}, []
    for _ in range(n_batches):
        x, y = batches.next()
        draws = [router_gradient(model, x, y, baseline_kind, draw) for draw in range(n_draws)]
        for group in draws[0][0]:
            g = torch.stack([grads[group] for grads, _ in draws])  # [draws, params]
            noise, signal = (g - g.mean(0)).pow(2).sum(1).mean().sqrt().item(), g.mean(0).norm().item()
            norms.setdefault(group, []).append(g.norm(dim=1).mean().item())
            if noise > 1e-6 * signal:  # a deterministic router's draws differ only by rounding: no ratio
                snrs.setdefault(group, []).append(signal / noise)
        totals += [torch.cat(list(grads.values())).norm().item() for grads, _ in draws]
        advantage_std += [a.std().item() for _, advantages in draws for a in advantages]
    return {"grad_norm": {group: float(np.mean(v)) for group, v in norms.items()},
            "snr": {group: float(np.median(snrs[group])) if group in snrs else None for group in norms},
            "total_norm": float(np.mean(totals)), "clipped_share": float(np.mean(np.array(totals) > clip)),
            "advantage_std": float(np.mean(advantage_std)) if advantage_std else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="the base model (.pt): results/lm/base/model.pt")
    p.add_argument("--corpus-dir", required=True, help="its corpus: results/data/shakespeare_char")
    p.add_argument("--config", nargs="*", default=[str(ROOT / "config/config.yaml")])
    p.add_argument("--methods", nargs="+", default=["standard_k1", "rl_k1", "rpo_k1"], help="<router>_k<k> slugs")
    p.add_argument("--settings", nargs="+", default=["diff", "sim0.3"], help="diff or sim<scale>")
    p.add_argument("--layers", nargs="+", default=["0", "all"], help="sets of MoE layers: 'all' or comma lists")
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--draws", type=int, default=8, help="route draws per batch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args()
    configure_torch(args.threads)
    config = cfg.load(*args.config)
    recovery, routers = config["recovery"], config["routers"]
    train = recovery["train"]
    base = frozen_base(args.base, args.corpus_dir)
    tokens = open_tokens(args.corpus_dir, "train")
    methods = {Arm(m["router"], m["k"]).slug: m for m in recovery["methods"] + config["benchmark"]["methods"]}
    rows = []
    for layer_set in args.layers:
        layers = layers_of("all" if layer_set == "all" else [int(i) for i in layer_set.split(",")],
                           base.config.n_layer)
        for name in args.settings:
            setting = RecoverySetting("diff") if name == "diff" else RecoverySetting("sim", float(name[3:]))
            for slug in args.methods:
                method = methods[slug]
                spec = routers[method["router"]]
                for baseline_kind in ("batch_mean", "greedy") if METHODS[spec["method"]].samples else ("none",):
                    model = recovery_model(base, layers, setting.mode, setting.scale, spec, k=method["k"],
                                           num_experts=recovery["num_experts"], seed=0)
                    fit_routers_to_corpus(model, tokens)
                    batches = Batches(tokens, train["batch_size"], train["block_size"], seed=0)
                    row = {"layers": layer_set, "setting": setting.name, "method": slug, "baseline": baseline_kind,
                           **measure(model, batches, args.batches, args.draws, baseline_kind, train["grad_clip"])}
                    rows.append(row)
                    groups = ", ".join(f"{g} {n:.3g}" + ("" if row["snr"][g] is None else f" (SNR {row['snr'][g]:.2f})")
                                       for g, n in row["grad_norm"].items())
                    adv = "" if row["advantage_std"] is None else f"; advantage std {row['advantage_std']:.3f}"
                    print(f"layers {layer_set:>4} {setting.name:>7} {slug:>12} {baseline_kind:>10}: gradient {groups}; "
                          f"total {row['total_norm']:.3g}, above clip {train['grad_clip']:g} in "
                          f"{row['clipped_share']:.0%}{adv}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "clip": train["grad_clip"]}, indent=1))


if __name__ == "__main__":
    main()
