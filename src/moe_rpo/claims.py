"""Turn measured per-seed metrics into verdicts on the paper's claims.

Every claim is one or more comparisons: an effect over seeds (a mean, a difference between arms paired by seed, a
share of seeds; see `verdicts`) and the side of a threshold the claim puts it on, both fixed in the config's
`claims` section before the runs. A claim the paper showed only in a regime our run did not reach (the
`Regime` read off its figure) is inconclusive whatever the intervals say. Each claim carries the paper's
numbers, read off its plots, beside ours."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from moe_rpo.experiments import EXPERIMENTS, SHAKESPEARE_PAPER_METHODS, load
from moe_rpo.values import DENSE, RecoverySetting
from moe_rpo.verdicts import (
    INCONCLUSIVE,
    NONNEGATIVE,
    SHARE,
    Comparison,
    combine,
    difference,
    exact,
    mean_effect,
    seeds_in_words,
    share,
)


@dataclass(frozen=True)
class Regime:
    """Where the paper showed a claim, read off its figure: a run that trained fewer steps or tokens, or in
    which even the best method's training loss stayed above the paper's range, could not have shown it. (The
    best method: a method that lags behind in a run that reached the regime is a finding, not a shortfall.)"""
    figure: str
    description: str
    reached_by: str  # the configuration that reaches it, as a command
    min_steps: int = 0
    min_tokens: float = 0
    max_train_loss: float = float("inf")

    def shortfall(self, df: pd.DataFrame) -> str | None:
        """Why the runs in df fall short of the regime, or None when they reach it."""
        short = []
        steps = int(df["steps"].min())
        if steps < self.min_steps:
            short.append(f"{steps} training steps, the paper's effect needs {self.min_steps}")
        if self.min_tokens and (tokens := float(df["tokens"].min())) < self.min_tokens:
            short.append(f"{tokens:.3g} training tokens, the paper's effect needs {self.min_tokens:.3g}")
        if self.max_train_loss < float("inf"):
            loss = float(df.groupby(["method", "k"])["train_loss"].mean().min())
            if loss > self.max_train_loss:
                short.append(f"the lowest final training loss is {loss:.3f}, the paper's runs end below "
                             f"{self.max_train_loss:g}")
        return "; ".join(short) or None

    def as_dict(self) -> dict:
        return {"figure": self.figure, "description": self.description}


TOY_REGIME = Regime(
    "toy-routing-trajectories.png",
    "the paper's 2-D toys train for 2000 steps (its trajectory figures plot 2000); a shorter run may stop before a "
    "method gets where it is going", "the default configuration (`make run`: 2000 toy steps)", min_steps=2000)
SHAKESPEARE_REGIME = Regime(
    "shakespeare-moe-loss.png",
    "5000 iterations of nanoGPT on Shakespeare; the four training curves separate only after about 2000 "
    "iterations, when the training losses are below about 1.1, and every method then overfits",
    "`make replicate` (config/regime.yaml: 3000 steps on four scenes, every reading)", min_steps=2000,
    max_train_loss=1.1)
PRETRAINING_REGIME = Regime(
    "tinystories-gpt2-negative-result.png",
    "GPT-2 124M on TinyStories to about 15.7B tokens; the MoE curves separate from the dense one from "
    "about 0.5B tokens on",
    "config/paper.yaml on GPUs (GPT-2 124M on TinyStories to about 15.7B tokens; at least 0.5B)", min_tokens=5e8)
# Read off the plots at the last iteration (5000) and the last token count (about 15.7B).
SHAKESPEARE_PAPER_LOSSES = {"top-1": (0.61, 1.70), "top-2": (0.31, 2.19), "EM": (0.17, 2.51), "RPO": (0.11, 3.02)}
PRETRAINING_PAPER_LOSSES = {"dense": 1.19, "MoE k=2": 1.10, "MoE + RPO k=2": 1.09}


def by_seed(df: pd.DataFrame, column: str, **where) -> pd.Series:
    """The column's values of the rows matching `where`, indexed by seed."""
    mask = pd.Series(True, index=df.index)
    for key, value in where.items():
        mask &= df[key] == value
    if not mask.any():
        raise ValueError(f"no rows for {where} in the results table; does the config run it?")
    rows = df[mask]
    return pd.Series(rows[column].to_numpy(), index=rows["seed"].to_numpy(), name=column)


def paper_rows(paper: dict[str, float], ours: dict[str, pd.Series], quantity: str) -> list[dict]:
    """The paper's number (read off its plot) beside our mean over seeds, per method."""
    return [{"quantity": f"{name} {quantity}", "paper": value, "ours": float(ours[name].mean())}
            for name, value in paper.items()]


def _claim(t: dict, cid: str, claim: str, metric: str, comparisons: list[Comparison], explanation: str,
           paper: str, paper_values: list[dict] = (), regime: Regime | None = None,
           df: pd.DataFrame | None = None, unanswerable: str | None = None) -> dict:
    """A claim's entry in claims.json. It is inconclusive, whatever its intervals, when the runs fall short of
    the paper's regime or when `unanswerable` says why the setup cannot show it."""
    verdict, reason = combine(comparisons, t["min_seeds"])
    shortfall = regime.shortfall(df) if regime else None
    why_not = [why for why in (shortfall and f"below the paper's regime: {shortfall}", unanswerable) if why]
    if why_not:
        verdict, reason = INCONCLUSIVE, f"{'; '.join(why_not)} (the intervals alone: {verdict})"
    if shortfall:
        to_decide = f"reach the paper's regime: {regime.reached_by}"
    elif unanswerable:
        to_decide = f"a base model in which expert 0 is identifiable: {IDENTIFIABLE_BASE}"
    else:
        to_decide = seeds_to_decide(comparisons) if verdict == INCONCLUSIVE else None
    return {"id": cid, "claim": claim, "metric": metric, "verdict": verdict, "reason": reason, "to_decide": to_decide,
            "comparisons": [c.as_dict(t["min_seeds"]) for c in comparisons], "explanation": explanation,
            "paper": {"summary": paper, "values": list(paper_values),
                      "regime": regime.as_dict() | {"reached": not shortfall} if regime else None}}


IDENTIFIABLE_BASE = "GPT-2 124M pretrained on OpenWebText, as the paper (config/paper.yaml, on GPUs)"


def seeds_to_decide(comparisons: list[Comparison]) -> str:
    """What more seeds would do for an inconclusive claim: the most that any of its undecided comparisons needs."""
    needed = [c.power()["seeds_to_decide"] for c in comparisons if c.judge(0)[0] == INCONCLUSIVE]
    return seeds_in_words(max((n for n in needed if n is not None), default=None))


def _toy_claim(t: dict, df: pd.DataFrame, *args, **kwargs) -> dict:
    """A toy's claim: inconclusive below the toys' regime (fewer steps than the paper's figures show)."""
    return _claim(t, *args, regime=TOY_REGIME, df=df, **kwargs)


def _means(quantity: str, by_arm: dict[str, pd.Series], spec: str = ".3f") -> str:
    return f"{quantity} (mean over seeds): " + ", ".join(f"{arm} {v.mean():{spec}}" for arm, v in by_arm.items()) + "."


def _interval(effect) -> str:
    return f"{effect.value:.3f} [{effect.low:.3f}, {effect.high:.3f}]"


def routing_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    arms = t["arms"]
    rpo = mean_effect("RPO K=2 final distance", by_seed(df, "final_distance", method=arms["rpo"], k=2), NONNEGATIVE)
    stalled = {m: mean_effect(f"{m} K=2 gap to the optimum", by_seed(df, "gap_to_optimum", method=arms[m], k=2))
               for m in ("standard", "jitter", "rl")}
    worse = difference("standard gap to the optimum, K=2 minus K=1",
                       by_seed(df, "gap_to_optimum", method=arms["standard"], k=2),
                       by_seed(df, "gap_to_optimum", method=arms["standard"], k=1))
    figure = "toy-routing-trajectories.png"
    return [
        _toy_claim(t, df, "toy_rpo_k2_reaches_target", "RPO with K=2 reaches the target.",
               "mean over seeds of the final distance of the greedy MoE output to the target (RPO, K=2; "
               "the K=2 optimum is at distance 0)",
               [Comparison(rpo, "<", t["reach_distance"])],
               f"RPO K=2 ends {_interval(rpo)} from the target (mean, 95% interval, {rpo.n} seeds).",
               f"{figure}: RPO's K=2 trajectory ends on the target."),
        _toy_claim(t, df, "toy_standard_variants_stall_k2",
               "Standard routing and its variants (jitter, RL) stall short of the optimum with K=2.",
               "mean over seeds of the gap between the final distance and the exact K=2 optimum, per variant",
               [Comparison(e, ">", t["stall_gap"]) for e in stalled.values()],
               "; ".join(f"{m}: gap {_interval(e)}" for m, e in stalled.items()) + ".",
               f"{figure}: the standard, jitter and RL trajectories with K=2 stop near the closest experts."),
        _toy_claim(t, df, "toy_standard_worse_with_k2",
               "The failure of standard routing is most evident with more than one expert (K=2 vs K=1).",
               "gap to the exact K-optimum of standard routing, K=2 minus K=1, paired by seed",
               [Comparison(worse, ">", 0.0)], f"K=2 minus K=1 gap: {_interval(worse)}.",
               f"{figure}: standard routing's K=2 panel ends farther from its optimum than its K=1 panel."),
    ]


def collapse_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    arms = t["arms"]
    ratio = {m: mean_effect(f"{m} distance ratio",
                            by_seed(df, "pairwise_distance_ratio", method=arms[m], weight_decay=0.0), NONNEGATIVE)
             for m in ("standard", "rpo")}
    low, high = (sorted(df["weight_decay"].unique())[i] for i in (0, -1))
    norm = difference(f"standard final router norm, wd={high:g} minus wd={low:g}",
                      by_seed(df, "final_router_norm", method=arms["standard"], weight_decay=high),
                      by_seed(df, "final_router_norm", method=arms["standard"], weight_decay=low))
    paper = "The write-up shows this in words and an animation; no plotted numbers."
    return [
        _toy_claim(t, df, "toy_collapse_standard_pulls_experts_together",
               "Trained jointly with the router (standard), experts that start at their optima drift toward each other.",
               "final / initial mean pairwise distance between experts (standard, no weight decay), mean over seeds",
               [Comparison(ratio["standard"], "<", t["collapse_ratio"])],
               f"the experts' mean pairwise distance ends at {_interval(ratio['standard'])} times its start.", paper),
        _toy_claim(t, df, "toy_collapse_rpo_keeps_experts_apart", "RPO keeps the experts apart.",
               "final / initial mean pairwise distance between experts (RPO, no weight decay), mean over seeds",
               [Comparison(ratio["rpo"], ">=", t["collapse_ratio"])],
               f"RPO's experts end at {_interval(ratio['rpo'])} times their initial pairwise distance.", paper),
        _toy_claim(t, df, "toy_collapse_weight_decay_bounds_router_norm",
               "Weight decay keeps the norm of the router weight matrix from exploding.",
               "final router weight norm (standard), largest minus smallest weight decay, paired by seed",
               [Comparison(norm, "<", 0.0)], f"router norm with minus without weight decay: {_interval(norm)}.", paper),
    ]


def dilemma_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    arms = t["arms"]
    standard = {m: mean_effect(f"{m} final distance", by_seed(df, "final_distance", method=arms[m]), NONNEGATIVE)
                for m in ("standard", "standard_normalized")}
    rpo = mean_effect("RPO final distance", by_seed(df, "final_distance", method=arms["rpo"]), NONNEGATIVE)
    reachable = float(df["standard_reachable_distance"].iloc[0])
    figure = "standard-moe-weighting-dilemma.png"
    return [
        _toy_claim(t, df, "toy_dilemma_standard_cannot_weight",
               "When the answer needs much of one expert and little of another, weights tied to the routing "
               "probabilities cannot express it.",
               "mean final distance to the target (optimum: 0), per standard variant",
               [Comparison(e, ">", t["stall_gap"]) for e in standard.values()],
               "; ".join(f"{m} ends {_interval(e)} from the target" for m, e in standard.items())
               + f"; the best point reachable with weights = probabilities is {reachable:.3f} away.",
               f"{figure}: the weights the answer needs lie off the probability simplex."),
        _toy_claim(t, df, "toy_dilemma_rpo_free_weights",
               "RPO's separate weight policy reaches the target.", "mean final distance to the target (RPO)",
               [Comparison(rpo, "<", t["reach_distance"])], f"RPO ends {_interval(rpo)} from the target.",
               f"{figure}: RPO's weight policy is free to leave the simplex."),
    ]


def barrier_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    standard = share("share of standard seeds routed to B", by_seed(df, "routes_to_b", method=t["arms"]["standard"]))
    rpo = share("share of RPO seeds routed to B", by_seed(df, "routes_to_b", method=t["arms"]["rpo"]))
    barrier = exact("loss barrier between A and B", df["barrier_height"].iloc[0])
    paper = "The write-up states this in words; no plotted numbers."
    return [
        _toy_claim(t, df, "toy_barrier_gradient_routing_stuck",
               "Gradient routing needs a monotone path between expert combinations; where the loss along it is not "
               "monotone, the router gets stuck.",
               "the loss barrier along the blend from A to B, and the share of seeds whose final greedy routing "
               "picks the optimal expert B (standard)",
               [Comparison(barrier, ">", 0.0), Comparison(standard, "<=", 1 - t["routing_share"])],
               f"the loss rises by {barrier.value:.3f} along the blend from A to B; standard routing picks B in "
               f"{standard.value:.0%} of {standard.n} seeds (95% interval {standard.low:.0%}-{standard.high:.0%}).",
               paper),
        _toy_claim(t, df, "toy_barrier_rpo_crosses", "RPO crosses the monotonicity barrier.",
               "share of seeds whose final greedy routing picks the optimal expert B (RPO)",
               [Comparison(rpo, ">=", t["routing_share"])],
               f"RPO picks B in {rpo.value:.0%} of {rpo.n} seeds (95% interval {rpo.low:.0%}-{rpo.high:.0%}).", paper),
    ]


def recovery_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    threshold, sim = t["recovery_accuracy"], RecoverySetting("sim", t["recovery_sim_scale"]).name
    arms = t["arms"]
    diff = mean_effect("standard k=1 DIFF accuracy",
                       by_seed(df, "accuracy", setting="diff", method=arms["standard"], k=1), SHARE)
    on_sim = {(m, k): mean_effect(f"{m} k={k} {sim} accuracy", by_seed(g, "accuracy"), SHARE)
              for (m, k), g in df[df["setting"] == sim].groupby(["method", "k"])}
    if not on_sim:
        raise ValueError(f"no rows for setting {sim!r} in the results table; does the config run it?")
    rpo = [e for (m, _), e in on_sim.items() if m == arms["rpo"]]
    if not rpo:
        raise ValueError(f"no rows for {arms['rpo']!r} at {sim!r} in the results table; does the config run it?")
    others = [e for (m, _), e in on_sim.items() if m != arms["rpo"]]
    paper = "The write-up states the result in words (GPT-2 124M on OpenWebText); it has no plotted numbers."

    def unidentifiable(setting):  # a router cannot be asked to send more tokens to expert 0 than it suits
        share = float(df.loc[df["setting"] == setting, "identifiability"].mean())
        if share >= threshold:
            return None
        return (f"not identifiable: expert 0 is the per-token best for {share:.1%} of {setting} tokens (mean over "
                f"layers and seeds), below the {threshold:.0%} the claim asks of a router")

    return [
        _claim(t, "lm_recovery_diff_unnormalized_finds_routing",
               "DIFF (random distractor experts): an unnormalised MoE (weights = raw softmax probabilities) finds "
               "the correct routing.",
               "mean over seeds of the final share of tokens whose top choice is the pretrained expert "
               "(mean over MoE layers; standard, k=1, DIFF)",
               [Comparison(diff, ">=", threshold)],
               f"standard top-1 routes {diff.value:.1%} of tokens to the pretrained expert (95% interval "
               f"{diff.low:.1%}-{diff.high:.1%}, {diff.n} seeds).", paper, unanswerable=unidentifiable("diff")),
        _claim(t, "lm_recovery_sim_only_rpo_recovers",
               "SIM (perturbed copies as distractors): standard training fails and only RPO recovers the correct "
               "routing.",
               f"mean final routing accuracy at SIM scale {t['recovery_sim_scale']:g}: RPO at or above the "
               "threshold, every other method below it",
               [Comparison(e, ">=", threshold) for e in rpo] + [Comparison(e, "<", threshold) for e in others],
               "; ".join(f"{e.label} {e.value:.1%} [{e.low:.1%}, {e.high:.1%}]" for e in rpo + others) + ".", paper,
               unanswerable=unidentifiable(sim)),
    ]


def shakespeare_moe_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    def series(column):
        return {name: by_seed(df, column, method=t["arms"][arm], k=k)
                for name, (arm, k) in SHAKESPEARE_PAPER_METHODS.items()}

    mean_loss, gap, final = series("mean_train_loss"), series("generalization_gap"), series("train_loss")
    val = series("val_loss")
    others = [name for name in SHAKESPEARE_PAPER_METHODS if name != "RPO"]
    fastest = [Comparison(difference(f"{name} minus RPO mean training loss", mean_loss[name], mean_loss["RPO"]),
                          ">", 0.0) for name in others]
    overfits = [Comparison(difference(f"RPO minus {name} generalization gap", gap["RPO"], gap[name]), ">", 0.0)
                for name in others]
    paper = f"{SHAKESPEARE_REGIME.figure}, read off the plot at 5000 iterations."
    train_rows = paper_rows({n: v[0] for n, v in SHAKESPEARE_PAPER_LOSSES.items()}, final, "final training loss")
    gap_rows = paper_rows({n: v[1] - v[0] for n, v in SHAKESPEARE_PAPER_LOSSES.items()},
                          {n: val[n] - final[n] for n in val}, "test minus training loss")
    return [
        _claim(t, "lm_shakespeare_rpo_trains_fastest",
               "On Shakespeare, RPO's training loss falls fastest (against top-1, top-2 and EM).",
               "mean training loss over all steps (area under the training curve), each other method minus RPO, "
               "paired by seed", fastest,
               _means("mean training loss", mean_loss), paper, train_rows, SHAKESPEARE_REGIME, df),
        _claim(t, "lm_shakespeare_rpo_overfits_most",
               "RPO overfits most: the largest gap between test and training loss.",
               "final validation minus final training loss (same fixed windows), RPO minus each other method, "
               "paired by seed", overfits,
               _means("generalization gap", gap, "+.3f"), paper, gap_rows, SHAKESPEARE_REGIME, df),
    ]


def pretraining_claims(df: pd.DataFrame, t: dict) -> list[dict]:
    arms = {**t["arms"], DENSE: DENSE}
    loss = {name: by_seed(df, "val_loss", method=arms[arm], k=k)
            for name, (arm, k) in {"dense": (DENSE, 1), "MoE k=2": ("standard", 2), "MoE + RPO k=2": ("rpo", 2)}.items()}
    beats = [Comparison(difference(f"{name} minus dense validation loss", loss[name], loss["dense"]), "<", 0.0)
             for name in ("MoE k=2", "MoE + RPO k=2")]
    gain = difference("MoE + RPO minus MoE validation loss", loss["MoE + RPO k=2"], loss["MoE k=2"])
    paper = f"{PRETRAINING_REGIME.figure}, read off the plot at about 15.7B tokens."
    rows = paper_rows(PRETRAINING_PAPER_LOSSES, loss, "test loss")
    return [
        _claim(t, "lm_pretraining_moe_beats_dense",
               "Trained from scratch, the MoEs (k=2) beat the dense model of the same active size.",
               "final validation loss, each MoE minus dense, paired by seed", beats,
               _means("validation loss", loss), paper, rows, PRETRAINING_REGIME, df),
        _claim(t, "lm_pretraining_rpo_no_gain",
               "RPO gives no gain over the standard MoE in pretraining (the paper's negative result).",
               f"final validation loss of MoE + RPO minus the standard MoE (k=2), paired by seed; a gain is a "
               f"difference below -{t['pretraining_gain']} nats/token",
               [Comparison(gain, ">=", -t["pretraining_gain"])], _means("validation loss", loss),
               paper, rows, PRETRAINING_REGIME, df),
    ]


AS_RUN = "as run"  # the robustness table's row of the configuration's own runs


def under_readings(claims_of, df: pd.DataFrame, readings: pd.DataFrame, t: dict) -> list[dict]:
    """The claims of `df`, each judged again under every reading (claims.readings): the reading's rows replace
    the rows of the same methods, the other methods' rows stay. Each claim gets its robustness table
    (`readings`: reading, verdict, reason and effects) and a headline saying whether the verdict survives."""
    claims = claims_of(df, t)
    if readings.empty:
        return claims
    tables = {AS_RUN: claims}
    for name, rows in readings.groupby("reading", sort=False):
        varied = set(zip(rows["method"], rows["k"]))
        kept = df[[(m, k) not in varied for m, k in zip(df["method"], df["k"])]]
        tables[name] = claims_of(pd.concat([kept, rows.drop(columns="reading")], ignore_index=True), t)
    for i, claim in enumerate(claims):
        table = [{"reading": name, "verdict": made[i]["verdict"], "reason": made[i]["reason"],
                  "effects": [{key: c[key] for key in ("label", "value", "low", "high", "n", "verdict")}
                              for c in made[i]["comparisons"]]} for name, made in tables.items()]
        claim["readings"] = table
        claim["robustness"] = robustness(table)
    return claims


def robustness(table: list[dict]) -> str:
    """The headline of a robustness table: one verdict under every reading, or which reading gives which."""
    verdicts = {row["verdict"] for row in table}
    if len(verdicts) == 1:
        return f"{verdicts.pop()} under every reading tried ({len(table)}, the runs as configured included)"
    return "depends on the reading: " + "; ".join(f"{row['reading']}: {row['verdict']}" for row in table)


def evaluate(tables_dir: str | Path, thresholds: dict) -> list[dict]:
    """Every claim of every experiment that checks some, from its per-seed table in tables_dir (and, where it
    has one, judged again under each reading of its robustness table)."""
    claims = []
    for experiment in (e for e in EXPERIMENTS.values() if e.claims):
        path = Path(tables_dir) / f"{experiment.seeds_table}.csv"
        robust = Path(tables_dir) / f"{experiment.robustness_table}.csv" if experiment.robustness_table else None
        for table in (path, robust):
            if table and not table.is_file():
                raise FileNotFoundError(f"missing results table: {table}")
        readings = pd.read_csv(robust) if robust else pd.DataFrame(columns=["reading"])
        try:
            made = under_readings(load(experiment.claims), pd.read_csv(path), readings, thresholds)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        for claim in made:
            if (claim["to_decide"] or "").startswith("about "):  # where the seeds are set
                claim["to_decide"] += f" (`{experiment.section}.seeds`)"
        claims += [{"id": claim["id"], "experiment": experiment.stem, **claim} for claim in made]
    return claims
