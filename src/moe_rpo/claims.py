"""Turn measured per-seed metrics into verdicts on the paper's claims. Thresholds come from the
config's `claims` section, fixed before the runs; a claim that does not hold is reported as such."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moe_rpo.config import DENSE, RecoverySetting
from moe_rpo.experiments import EXPERIMENTS, SHAKESPEARE_PAPER_METHODS, load

REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"


def spread(values: pd.Series) -> dict:
    values = values.astype(float)
    if not np.isfinite(values).all():  # a diverged run must not decide a verdict
        raise ValueError(f"non-finite {values.name} values {values.tolist()} in the results table")
    return {"median": values.median(), "mean": values.mean(), "std": values.std(ddof=1) if len(values) > 1 else 0.0,
            "min": values.min(), "max": values.max(), "n": int(len(values))}


def _select(df: pd.DataFrame, **where) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    for column, value in where.items():
        mask &= df[column] == value
    if not mask.any():
        raise ValueError(f"no rows for {where} in the results table; does the config run it?")
    return df[mask]


def _claim(cid, claim, metric, measured, threshold, holds, explanation) -> dict:
    return {"id": cid, "claim": claim, "metric": metric, "measured": measured, "threshold": threshold,
            "verdict": REPRODUCED if holds else NOT_REPRODUCED, "explanation": explanation}


def routing_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    arms = t["arms"]  # the router that plays each method the claims name
    rpo = spread(_select(df, method=arms["rpo"], k=2)["final_distance"])
    stalled = {m: spread(_select(df, method=arms[m], k=2)["gap_to_optimum"]) for m in ("standard", "jitter", "rl")}
    standard = {f"k={k}": spread(_select(df, method=arms["standard"], k=k)["gap_to_optimum"]) for k in (1, 2)}
    return [
        _claim("toy_rpo_k2_reaches_target", "RPO with K=2 reaches the target.",
               "median over seeds of the final distance of the greedy MoE output to the target (RPO, K=2)",
               {"rpo k=2 final distance": rpo}, f"median < {t['reach_distance']}", rpo["median"] < t["reach_distance"],
               f"RPO K=2 ends {rpo['median']:.3f} from the target (median of {rpo['n']} seeds; range "
               f"{rpo['min']:.3f}-{rpo['max']:.3f}); the K=2 optimum is at distance 0."),
        _claim("toy_standard_variants_stall_k2",
               "Standard routing and its variants (jitter, RL) stall short of the optimum with K=2.",
               "median over seeds of the gap between the final distance and the exact K=2 optimum",
               {f"{m} k=2 gap": s for m, s in stalled.items()}, f"median gap > {t['stall_gap']} for every variant",
               all(s["median"] > t["stall_gap"] for s in stalled.values()),
               "; ".join(f"{m}: median gap {s['median']:.3f} (range {s['min']:.3f}-{s['max']:.3f})"
                         for m, s in stalled.items()) + "."),
        _claim("toy_standard_worse_with_k2",
               "The failure of standard routing is most evident with more than one expert (K=2 vs K=1).",
               "median gap to the exact K-optimum of standard routing, K=2 against K=1",
               {f"standard {k} gap": s for k, s in standard.items()}, "median gap with K=2 > median gap with K=1",
               standard["k=2"]["median"] > standard["k=1"]["median"],
               f"standard routing: median gap {standard['k=1']['median']:.3f} with K=1, "
               f"{standard['k=2']['median']:.3f} with K=2."),
    ]


def collapse_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    arms = t["arms"]
    ratio = {m: spread(_select(df, method=arms[m], weight_decay=0.0)["pairwise_distance_ratio"])
             for m in ("standard", "rpo")}
    decays = sorted(df["weight_decay"].unique())
    norms = {f"standard wd={wd:g}": spread(_select(df, method=arms["standard"], weight_decay=wd)["final_router_norm"])
             for wd in (decays[0], decays[-1])}
    low, high = norms.values()
    return [
        _claim("toy_collapse_standard_pulls_experts_together",
               "Trained jointly with the router (standard), experts that start at their optima drift toward each other.",
               "final / initial mean pairwise distance between experts (standard, no weight decay), median over seeds",
               {"standard distance ratio": ratio["standard"]}, f"median ratio < {t['collapse_ratio']}",
               ratio["standard"]["median"] < t["collapse_ratio"],
               f"the experts' mean pairwise distance ends at {ratio['standard']['median']:.2f}x its start "
               f"(range {ratio['standard']['min']:.2f}-{ratio['standard']['max']:.2f})."),
        _claim("toy_collapse_rpo_keeps_experts_apart", "RPO keeps the experts apart.",
               "final / initial mean pairwise distance between experts (RPO, no weight decay), median over seeds",
               {"rpo distance ratio": ratio["rpo"]}, f"median ratio >= {t['collapse_ratio']}",
               ratio["rpo"]["median"] >= t["collapse_ratio"],
               f"RPO's experts end at {ratio['rpo']['median']:.2f}x their initial pairwise distance "
               f"(range {ratio['rpo']['min']:.2f}-{ratio['rpo']['max']:.2f})."),
        _claim("toy_collapse_weight_decay_bounds_router_norm",
               "Weight decay keeps the norm of the router weight matrix from exploding.",
               "final router weight norm (standard) with the largest against the smallest weight decay",
               norms, "median norm with weight decay < without", high["median"] < low["median"],
               f"median final router norm {low['median']:.2f} at wd={decays[0]:g}, {high['median']:.2f} at wd={decays[-1]:g}."),
    ]


def dilemma_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    arms = t["arms"]
    standard = {m: spread(_select(df, method=arms[m])["final_distance"]) for m in ("standard", "standard_normalized")}
    rpo = spread(_select(df, method=arms["rpo"])["final_distance"])
    reachable = float(df["standard_reachable_distance"].iloc[0])
    return [
        _claim("toy_dilemma_standard_cannot_weight",
               "When the answer needs much of one expert and little of another, weights tied to the routing "
               "probabilities cannot express it.",
               "median final distance to the target (optimum: 0)", {f"{m} final distance": s for m, s in standard.items()},
               f"median > {t['stall_gap']}", all(s["median"] > t["stall_gap"] for s in standard.values()),
               f"standard routing ends {standard['standard']['median']:.3f} from the target; the best point reachable "
               f"with weights = probabilities is {reachable:.3f} away."),
        _claim("toy_dilemma_rpo_free_weights",
               "RPO's separate weight policy reaches the target.", "median final distance to the target (RPO)",
               {"rpo final distance": rpo}, f"median < {t['reach_distance']}", rpo["median"] < t["reach_distance"],
               f"RPO ends {rpo['median']:.3f} from the target (range {rpo['min']:.3f}-{rpo['max']:.3f})."),
    ]


def barrier_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    share = {f"{m} k={k}": float(g["routes_to_b"].astype(bool).mean()) for (m, k), g in df.groupby(["method", "k"])}
    standard = float(_select(df, method=t["arms"]["standard"])["routes_to_b"].astype(bool).mean())
    rpo = float(_select(df, method=t["arms"]["rpo"])["routes_to_b"].astype(bool).mean())
    barrier = float(df["barrier_height"].iloc[0])
    return [
        _claim("toy_barrier_gradient_routing_stuck",
               "Gradient routing needs a monotone path between expert combinations; where the loss along it is not "
               "monotone, the router gets stuck.",
               "share of seeds whose final greedy routing picks the optimal expert B (standard)",
               {"share routed to B": share, "barrier height": barrier},
               f"barrier height > 0 and share <= {1 - t['routing_share']:.2f}",
               barrier > 0 and standard <= 1 - t["routing_share"],
               f"the loss rises by {barrier:.3f} along the blend from A to B; standard routing picks B in "
               f"{standard:.0%} of seeds."),
        _claim("toy_barrier_rpo_crosses", "RPO crosses the monotonicity barrier.",
               "share of seeds whose final greedy routing picks the optimal expert B (RPO)", {"share routed to B": share},
               f"share >= {t['routing_share']:.2f}", rpo >= t["routing_share"], f"RPO picks B in {rpo:.0%} of seeds."),
    ]


def recovery_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    threshold, sim = t["recovery_accuracy"], RecoverySetting("sim", t["recovery_sim_scale"]).name
    arms = t["arms"]
    diff = spread(_select(df, setting="diff", method=arms["standard"], k=1)["accuracy"])
    on_sim = {f"{m} k={k}": spread(g["accuracy"]) for (m, k), g in _select(df, setting=sim).groupby(["method", "k"])}
    rpo = spread(_select(df, setting=sim, method=arms["rpo"])["accuracy"])
    others = {name: s for name, s in on_sim.items() if not name.startswith(f"{arms['rpo']} ")}
    failing = [name for name, s in others.items() if s["median"] < threshold]
    return [
        _claim("lm_recovery_diff_unnormalized_finds_routing",
               "DIFF (random distractor experts): an unnormalised MoE (weights = raw softmax probabilities) finds "
               "the correct routing.",
               "median over seeds of the final share of tokens whose top choice is the pretrained expert "
               "(mean over MoE layers; standard, k=1, DIFF)",
               {"standard k=1 accuracy": diff}, f"median >= {threshold}", diff["median"] >= threshold,
               f"standard top-1 routes {diff['median']:.1%} of tokens to the pretrained expert (median of "
               f"{diff['n']} seeds; range {diff['min']:.1%}-{diff['max']:.1%})."),
        _claim("lm_recovery_sim_only_rpo_recovers",
               "SIM (perturbed copies as distractors): standard training fails and only RPO recovers the correct "
               "routing.",
               f"median final routing accuracy at SIM scale {t['recovery_sim_scale']:g}, RPO against every other method",
               {"accuracy": on_sim}, f"RPO median >= {threshold} and every other method's median < {threshold}",
               rpo["median"] >= threshold and len(failing) == len(others),
               f"RPO routes {rpo['median']:.1%} of tokens to the pretrained expert (median); "
               f"{len(failing)} of {len(others)} other methods stay below {threshold:.0%}"
               + (f"; above it: {', '.join(sorted(set(others) - set(failing)))}." if len(failing) < len(others)
                  else ".")),
    ]


def shakespeare_moe_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    def rpo_ranks_first(claim_id, statement, metric, column, label, pick, rank, fmt):
        values = {name: spread(_select(df, method=t["arms"][arm], k=k)[column])
                  for name, (arm, k) in SHAKESPEARE_PAPER_METHODS.items()}
        first = pick(values, key=lambda name: values[name]["median"])
        return _claim(claim_id, statement, metric,
                      {f"{name} {label}": s for name, s in values.items()}, f"RPO's median is the {rank}",
                      first == "RPO",
                      "; ".join(f"{name}: {s['median']:{fmt}}" for name, s in values.items()) + f" ({rank}: {first}).")

    return [
        rpo_ranks_first("lm_shakespeare_rpo_trains_fastest",
                        "On Shakespeare, RPO's training loss falls fastest (against top-1, top-2 and EM).",
                        "median over seeds of the mean training loss over all steps (area under the training curve)",
                        "mean_train_loss", "mean training loss", min, "lowest", ".3f"),
        rpo_ranks_first("lm_shakespeare_rpo_overfits_most",
                        "RPO overfits most: the largest gap between test and training loss.",
                        "median over seeds of the final validation loss minus the final training loss (same fixed "
                        "windows)", "generalization_gap", "generalization gap", max, "largest", "+.3f"),
    ]


def pretraining_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    arms = {**t["arms"], DENSE: DENSE}
    loss = {name: spread(_select(df, method=arms[arm], k=k)["val_loss"])
            for name, (arm, k) in {"dense": (DENSE, 1), "MoE k=2": ("standard", 2), "MoE + RPO k=2": ("rpo", 2)}.items()}
    dense, moe, rpo = (loss[name]["median"] for name in ("dense", "MoE k=2", "MoE + RPO k=2"))
    gain = t["pretraining_gain"]
    return [
        _claim("lm_pretraining_moe_beats_dense",
               "Trained from scratch, the MoEs (k=2) beat the dense model of the same active size.",
               "median over seeds of the final validation loss", loss, "both MoE medians < the dense median",
               moe < dense and rpo < dense,
               f"validation loss: dense {dense:.3f}, MoE k=2 {moe:.3f}, MoE + RPO k=2 {rpo:.3f}."),
        _claim("lm_pretraining_rpo_no_gain",
               "RPO gives no gain over the standard MoE in pretraining (the paper's negative result).",
               "median final validation loss of MoE + RPO minus that of the standard MoE (k=2)",
               {"difference": rpo - moe, **loss}, f"RPO not better by more than {gain} nats/token",
               rpo - moe > -gain,
               f"RPO minus standard MoE: {rpo - moe:+.3f} nats/token (a gain would be below -{gain})."),
    ]


def evaluate(tables_dir: str | Path, thresholds: dict) -> list[dict]:
    """Every claim of every experiment that checks some, from its per-seed table in tables_dir."""
    claims = []
    for experiment in (e for e in EXPERIMENTS.values() if e.claims):
        path = Path(tables_dir) / f"{experiment.seeds_table}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"missing results table: {path}")
        try:
            made = load(experiment.claims)(pd.read_csv(path), thresholds)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        claims += [{"id": claim["id"], "experiment": experiment.stem, **claim} for claim in made]
    return claims
