"""The experiments, one definition each: its jobs and their records, the tables and figures it makes, the
claims it checks and its report page. The Snakemake rules, the CLI, the claims and the report all read
this registry; adding an experiment is one entry here plus its compute, table and figure functions.

The functions an entry names run in jobs with heavy imports (pandas, matplotlib, torch), so the entry names
them as "module:function" and `load` imports them where they run; the rules add those modules to their
code inputs (`Experiment.modules`)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from moe_rpo import job_kinds, paths
from moe_rpo.sections import (
    READINGS_EXPERIMENT,
    arm_router,
    benchmark_toy_settings,
    layer_sweep_sets,
    reading_methods,
    recovery_methods,
    recovery_settings,
    toy_seeds,
)
from moe_rpo.values import DENSE, Arm, RecoverySetting, layer_set_label


class Job(NamedTuple):
    label: str   # how the report's run table names it
    record: str  # its run record, relative to the results directory, without ".json"
    key: str     # its log (logs/KEY.log) and Snakemake benchmark (benchmarks/KEY.tsv)
    suffixes: tuple[str, ...] = (".json",)  # the files it writes: RECORD + suffix

    @classmethod
    def of(cls, run: dict, label: str, suffixes: tuple[str, ...] = (".json",), **fields) -> Job:
        """The job of a kind's paths template (job_kinds: JobKind.files) with its fields filled."""
        return cls(label, run["record"].format(**fields), run["key"].format(**fields), suffixes)

    def files(self) -> list[str]:
        return [paths.result(self.record + suffix) for suffix in self.suffixes]


class FigureInputs(NamedTuple):
    """What an experiment's figure function draws from."""
    runs: list[Path]          # the job records
    tables: dict[str, Path]   # the experiment's tables by name
    view: dict                # Experiment.view(config)
    out_dir: Path


@dataclass(frozen=True)
class Experiment:
    name: str            # on the command line: `moe-rpo tables NAME`
    stem: str            # prefix of its tables and figures, and its report page
    title: str
    summary: str         # the page's introduction and the Snakemake report's caption
    section: str         # the config section (dotted) whose methods it runs
    jobs: Callable[[dict], list[Job]]
    tables: tuple[str, ...]        # every table its tables step writes
    shown: tuple[str, ...]         # the tables its page shows
    figures: tuple[str, ...]
    make_tables: str     # "module:function"(experiment, runs, view) -> {table name: DataFrame}
    draw: str            # "module:function"(experiment, FigureInputs) -> the figure files written
    view: Callable[[dict], dict] = lambda config: {}  # the config its tables and figures read
    group_keys: tuple[str, ...] = ()  # the summary table: one row per group...
    metrics: tuple[str, ...] = ()     # ... with the spread over seeds of these
    claims: str | None = None         # "module:function"(seeds table, claims section) -> claims
    claim_arms: tuple[tuple[str, int | None], ...] = ()  # (claims.arms key, k or None: any k) it compares
    robustness_table: str | None = None  # per-seed rows of its runs under claims.readings (a 'reading' column)
    facts: str | None = None          # "module:function"(experiment, results dir, config) -> page facts
    facts_title: str = "Scale"
    on_base_model: bool = False       # its numbers come from the (CPU-scale) base model
    kind: str = "reads"  # the job kind that makes its runs: 'toy', 'recovery', 'training'; 'reads': others' runs

    @property
    def seeds_table(self) -> str:
        return f"{self.stem}_seeds"

    def modules(self, command: str) -> list[str]:
        """The modules the tables or figures command imports by name for this experiment (its rule's code
        inputs add them)."""
        return [{"tables": self.make_tables, "figures": self.draw}[command].split(":")[0]]


def load(ref: str):
    """The function a "module:function" reference names."""
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


# --- jobs --------------------------------------------------------------------------------------------------

def toy_jobs(experiment: str, seeds: list[int], label: str = "") -> list[Job]:
    """A toy's one job, which trains all its seeds side by side."""
    return [Job.of(job_kinds.TOY_RUN.files, f"{label}{len(seeds)} seeds", (".json", ".npz"), experiment=experiment)]


def recovery_jobs(methods: dict[str, list[dict]], seeds: list[int]) -> list[Job]:
    """Recovery jobs, one per setting, seed and method: `methods` maps each setting to the methods to read there."""
    return [Job.of(job_kinds.RECOVERY_RUN.files, f"{setting} {Arm.of(m).slug} seed {seed}", setting=setting,
                   method=Arm.of(m).slug, seed=seed)
            for setting, setting_methods in methods.items() for seed in seeds for m in setting_methods]


def recovery_layers_jobs(recovery: dict) -> list[Job]:
    """The layer sweep's jobs: one per set of MoE layers, setting, seed and method."""
    sweep = recovery["layer_sweep"]
    return [Job.of(job_kinds.RECOVERY_LAYERS_RUN.files, f"layers {label} {setting} {Arm.of(m).slug} seed {seed}", layers=label,
                   setting=setting, method=Arm.of(m).slug, seed=seed)
            for label in layer_sweep_sets(recovery) for setting in sweep["settings"] for seed in recovery["seeds"]
            for m in sweep["methods"]]


def recovery_design_jobs(seeds: list[int]) -> list[Job]:
    """The identifiability sweep's jobs (one per seed; no router trains)."""
    return [Job.of(job_kinds.RECOVERY_DESIGN.files, f"identifiability sweep seed {seed}", seed=seed) for seed in seeds]


def training_jobs(experiment: str, methods: list[dict], seeds: list[int]) -> list[Job]:
    slugs = [Arm.of(m).slug for m in methods]
    return [Job.of(job_kinds.TRAIN_RUN.files, f"{slug} seed {seed}", training=experiment, method=slug, seed=seed)
            for slug in slugs for seed in seeds]


def reading_jobs(config: dict) -> list[Job]:
    """The runs of claims.readings: each reading's methods, every seed of the experiment it varies."""
    return [Job.of(job_kinds.READING_RUN.files, f"{reading}: {Arm.of(m).slug} seed {seed}", training=READINGS_EXPERIMENT,
                   reading=reading, method=Arm.of(m).slug, seed=seed)
            for reading in config["claims"]["readings"] for m in reading_methods(config, reading)
            for seed in config[READINGS_EXPERIMENT]["seeds"]]


def _benchmark_methods_among(config: dict, runs: list[dict]) -> list[dict]:
    """The benchmark's methods that are among `runs`, in the benchmark's order (the others show 'not run')."""
    arms = {Arm.of(m) for m in runs}
    return [m for m in config["benchmark"]["methods"] if Arm.of(m) in arms]


def benchmark_shakespeare_methods(config: dict) -> list[dict]:
    """The benchmark's methods that the shakespeare_moe experiment runs."""
    return _benchmark_methods_among(config, config["shakespeare_moe"]["methods"])


def benchmark_recovery_methods(config: dict, setting: str) -> list[dict]:
    """The benchmark's methods that the recovery jobs of `setting` train."""
    return _benchmark_methods_among(config, recovery_methods(config, setting))


def benchmark_jobs(config: dict) -> list[Job]:
    settings = config["benchmark"]["recovery"]["settings"]
    return (toy_jobs("benchmark", benchmark_toy_settings(config)["seeds"], "toy ")
            + recovery_jobs({s: benchmark_recovery_methods(config, s) for s in settings}, config["recovery"]["seeds"])
            + training_jobs("shakespeare_moe", benchmark_shakespeare_methods(config), config["shakespeare_moe"]["seeds"]))


# --- the registry ------------------------------------------------------------------------------------------

# The methods the paper compares on Shakespeare (its claims and curves): label -> (claims.arms key, k).
SHAKESPEARE_PAPER_METHODS = {"top-1": ("standard", 1), "top-2": ("standard", 2), "EM": ("em", 1), "RPO": ("rpo", 1)}
TRAINING_METRICS = ("train_loss", "val_loss", "generalization_gap", "mean_train_loss", "max_load_ratio", "max_vio_batch",
                    "max_vio_global", "gini", "dead_experts", "entropy", "unrouted", "misrouting_penalty",
                    "route_regret", "saturation_mid", "flip_rate_mean", "token_specialisation")


def _toy(name: str, title: str, summary: str, figures: tuple[str, ...], group_keys: tuple[str, ...],
         metrics: tuple[str, ...], claim_arms, extra_tables: tuple[str, ...] = (),
         make_tables: str = "moe_rpo.tables:seed_tables") -> Experiment:
    stem = f"toy_{name}"
    return Experiment(
        name=name, stem=stem, title=title, summary=summary, section=f"toy.{name}",
        jobs=lambda config: toy_jobs(name, toy_seeds(config, name)),
        tables=(f"{stem}_seeds", f"{stem}_summary", *extra_tables), shown=(f"{stem}_summary", *extra_tables),
        figures=figures, make_tables=make_tables, draw=f"moe_rpo.figures.toy:draw_{name}",
        view=lambda config: {"trajectory_seed": config["report"]["trajectory_seed"]},
        group_keys=group_keys, metrics=metrics,
        claims=f"moe_rpo.claims:{name}_claims", claim_arms=claim_arms, kind="toy")


def _training(name: str, title: str, short_title: str, summary: str, claim_arms, curve_arms=None) -> Experiment:
    stem = f"lm_{name}"
    readings = name == READINGS_EXPERIMENT  # its claims are judged again under each of claims.readings

    def view(config):  # the curves show the paper's methods where it names them, else every method
        shown = [] if curve_arms is None else [Arm(arm_router(config, arm), k).slug for arm, k in curve_arms]
        return {"title": short_title, "curve_methods": shown}

    def jobs(config):
        return training_jobs(name, config[name]["methods"], config[name]["seeds"]) + (
            reading_jobs(config) if readings else [])

    return Experiment(
        name=name, stem=stem, title=title, summary=summary, section=name, jobs=jobs,
        tables=(f"{stem}_seeds", f"{stem}_summary", *[f"{stem}_readings"] * readings), shown=(f"{stem}_summary",),
        figures=(f"{stem}_curves", f"{stem}_final"), make_tables="moe_rpo.tables:training_tables",
        draw="moe_rpo.figures.training:draw_training", view=view, group_keys=("method", "k"),
        metrics=TRAINING_METRICS, claims=f"moe_rpo.claims:{name}_claims", claim_arms=claim_arms,
        robustness_table=f"{stem}_readings" if readings else None, facts="moe_rpo.report.render:training_facts",
        kind="training")


def _recovery_view(config: dict) -> dict:
    scale = config["claims"]["recovery_sim_scale"]
    return {"sim_setting": RecoverySetting("sim", scale).name, "sim_scale": scale,
            "threshold": config["claims"]["recovery_accuracy"], "num_experts": config["recovery"]["num_experts"],
            # its jobs run the benchmark's methods too in the benchmark's settings: its tables show its own
            "methods": [Arm.of(m).slug for m in config["recovery"]["methods"]],
            "layers": layer_set_label(config["recovery"]["layers"]),  # the claims' set; the sweep's are others
            "sweep_methods": [Arm.of(m).slug for m in config["recovery"]["layer_sweep"]["methods"]],
            "sweep_settings": config["recovery"]["layer_sweep"]["settings"]}


# The experiments whose records each group of the benchmark's columns reads (a record names its experiment).
BENCHMARK_SOURCES = {"toy": ("routing",), "recovery": ("recovery",), "shakespeare": ("shakespeare_moe",)}


def _benchmark_view(config: dict) -> dict:
    known = recovery_settings(config["recovery"])
    sims = [name for name in config["benchmark"]["recovery"]["settings"] if known[name].mode == "sim"]
    standard = arm_router(config, "standard")  # top-1 and top-2: what every arm is compared with
    references = [m for m in config["benchmark"]["methods"] if m["router"] == standard and m["k"] in (1, 2)]
    return {"methods": config["benchmark"]["methods"], "sim_setting": sims[0] if sims else None,
            "references": references, "sources": BENCHMARK_SOURCES}


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [
    _toy("routing", "Toy 1: routing trajectories",
         "Eight fixed 2-D experts and a target (red star). Only the router trains, for every "
         "method with K=1 and K=2; the figure draws the MoE output after every step (white to blue). "
         "The exact K-optimum comes from enumerating expert subsets with least-squares weights; "
         "'standard reachable' is the best point when the weights are the softmax probabilities.",
         ("toy_routing_trajectories", "toy_routing_final_distance"), ("method", "k"),
         ("final_distance", "gap_to_optimum", "gap_to_standard_reachable"),
         (("rpo", 2), ("standard", 1), ("standard", 2), ("jitter", 2), ("rl", 2)),
         extra_tables=("toy_routing_optima",), make_tables="moe_rpo.tables:routing_tables"),
    _toy("collapse", "Toy 2: expert collapse",
         "2-D regression with one input cluster per expert; each expert (a 2-D weight vector) starts "
         "at its cluster's optimal solution (dashed circle). Router and experts train: jointly "
         "(standard) or by E/M alternation (RPO), with and without weight decay on the router.",
         ("toy_collapse_positions", "toy_collapse_metrics"), ("method", "k", "weight_decay"),
         ("pairwise_distance_ratio", "final_drift", "final_router_norm", "final_routing_accuracy", "final_eval_loss"),
         (("standard", None), ("rpo", None))),
    _toy("dilemma", "Toy 3: expert weighting dilemma",
         "The target needs much of expert A and little of expert B. With weights equal to router "
         "probabilities, one number decides both selection and contribution, so the weights stay on "
         "the probability simplex; RPO's separate weight policy is free.",
         ("toy_dilemma_weights",), ("method", "k"), ("final_distance", "final_weight_0", "final_weight_1"),
         (("standard", None), ("standard_normalized", None), ("rpo", None))),
    _toy("barrier", "Toy 4: monotonicity barrier",
         "Two fixed experts feed a frozen non-linear readout; expert B is optimal, A nearly as good, "
         "their blends are bad. Gradient routing follows the blend and stops in the local minimum at A; "
         "RPO optimises the expected loss over discrete selections, which is linear in the routing "
         "probability.",
         ("toy_barrier_landscape",), ("method", "k"), ("routes_to_b", "final_prob_b", "final_loss"),
         (("standard", None), ("rpo", None))),
    Experiment(
        name="recovery", stem="lm_recovery", title="GPT-2 optimal routing recovery (DIFF / SIM)",
        summary=("Every chosen MLP of the dense base model becomes an MoE layer of 4 experts: expert 0 is the "
                 "pretrained MLP, experts 1-3 are distractors, either randomly initialised (DIFF) or the "
                 "pretrained weights plus Gaussian noise of relative size 'scale' (SIM). Experts and the rest "
                 "of the model are frozen; only the routers train. Routing accuracy is the share of validation "
                 "tokens whose most probable expert is the pretrained one (strictly: ties count as misses), "
                 "averaged over the MoE layers; the validation loss is compared with the dense base model on "
                 "the same windows. The per-token oracle says whether expert 0 is in fact the best expert: for "
                 "each MoE layer and expert, every validation token's loss with that layer on that expert (the "
                 "others on expert 0); identifiability is the share of tokens for which expert 0 is strictly best, "
                 "and a method's route regret its validation loss minus the oracle's (the regret to expert 0 is "
                 "its gap to the base model). The claims are made only where expert 0 is identifiable. The "
                 "identifiability sweep trains nothing: it measures the oracle of every layer for DIFF and more SIM "
                 "scales (recovery.design), so that the page shows for which settings and sets of MoE layers the "
                 "question can be asked at all. 'Unit weights': each method's routing evaluated with weights 1/k, "
                 "apart from its learned weights (RPO's are free and may drift from the 1 that expert 0 needs)."),
        section="recovery",
        jobs=lambda config: (recovery_jobs(dict.fromkeys(recovery_settings(config["recovery"]), config["recovery"]["methods"]),
                                           config["recovery"]["seeds"])
                             + recovery_layers_jobs(config["recovery"]) + recovery_design_jobs(config["recovery"]["seeds"])),
        tables=("lm_recovery_seeds", "lm_recovery_summary", "lm_recovery_oracle", "lm_recovery_regret",
                "lm_recovery_layers", "lm_recovery_design"),
        shown=("lm_recovery_design", "lm_recovery_oracle", "lm_recovery_regret", "lm_recovery_layers",
               "lm_recovery_summary"),
        figures=("lm_recovery_identifiability", "lm_recovery_diff", "lm_recovery_sim", "lm_recovery_sim_sweep",
                 "lm_recovery_layers"),
        make_tables="moe_rpo.tables:recovery_tables", draw="moe_rpo.figures.recovery:draw_recovery", view=_recovery_view,
        group_keys=("setting", "method", "k"),
        metrics=("accuracy", "min_layer_accuracy", "val_loss", "gap_to_base", "regret", "identifiability",
                 "min_layer_identifiability", "oracle_loss", "val_loss_unit_weights", "mean_weight", "entropy",
                 "pretrained_load", "max_load"),
        claims="moe_rpo.claims:recovery_claims", claim_arms=(("standard", 1), ("rpo", None)),
        facts="moe_rpo.report.render:base_model_facts", facts_title="Base model", on_base_model=True, kind="recovery"),
    _training("shakespeare_moe", "Shakespeare MoE: RPO vs top-1 vs top-2 vs EM", "Shakespeare MoE",
              "nanoGPT-style GPTs whose every MLP is an MoE layer, trained from scratch on Shakespeare "
              "characters; routers, experts and the rest train together (RPO and EM by E/M alternation). "
              "The curves show the paper's four methods; the final-loss figure and the table every router "
              "of the benchmark. Final losses are measured on the same fixed windows of both splits.",
              tuple(SHAKESPEARE_PAPER_METHODS.values()), curve_arms=SHAKESPEARE_PAPER_METHODS.values()),
    _training("pretraining", "Pretraining from scratch: dense vs MoE vs MoE + RPO", "Pretraining from scratch",
              "A dense GPT against MoE GPTs (k=2 of 4 experts per MLP) with the standard router and with "
              "RPO, at the same active size and on the same batches. The paper trained GPT-2 124M on "
              "TinyStories (config/paper.yaml over full.yaml); the default config runs a small version on Shakespeare.",
              ((DENSE, 1), ("standard", 2), ("rpo", 2))),
    Experiment(
        name="routerless", stem="lm_routerless", title="Routerless routing: fixed routers against learned ones",
        summary=("Fixed routers (hashing token ids, or a frozen random projection) with trainable experts, "
                 "against learned routers at the same budget (the same Shakespeare MoE runs). Does the loss "
                 "alone reveal whether routing was learned? Next to the loss: the loss increase when every "
                 "token is sent to other experts with the same weights (how much the model relies on its "
                 "routing), load balance and router entropy."),
        section="shakespeare_moe",
        jobs=lambda config: training_jobs("shakespeare_moe", config["routerless"]["fixed"]
                                          + config["routerless"]["learned"], config["shakespeare_moe"]["seeds"]),
        tables=("lm_routerless_seeds", "lm_routerless_summary"), shown=("lm_routerless_summary",),
        figures=("lm_routerless",), make_tables="moe_rpo.tables:routerless_tables",
        draw="moe_rpo.figures.training:draw_routerless", view=lambda config: config["routerless"],
        group_keys=("router_kind", "method", "k"), metrics=TRAINING_METRICS,
        facts="moe_rpo.report.render:training_facts"),
    Experiment(
        name="benchmark", stem="lm_benchmark", title="Router benchmark",
        summary=("Every router of the survey and of 2024-2026, and any router of another package (method: plugin), "
                 "behind one interface, in three experiments: toy 1's gap to the exact K-optimum (config seeds), "
                 "routing recovery (DIFF and SIM accuracy and route regret to the per-token oracle; the recovery "
                 "experiment's runs, which in the benchmark's settings run every benchmark method), and Shakespeare "
                 "MoE training from scratch. Quality: the losses. Balance, on the validation windows: E x the "
                 "largest expert's load (1 = balanced), MaxVio = (max load - mean) / mean per batch and over all "
                 "batches, the load's Gini coefficient, the share of dead experts (< 1% of the load). Routing: the "
                 "counterfactual route regret of the final model (per token, its loss minus the best of 4 sampled "
                 "alternative routes of equal compute, floored at 0), saturation (the share of the final routing "
                 "already chosen at half of training, on 4096 fixed validation tokens), the mean flip rate of those "
                 "routes between evaluations, token-id specialisation (the share of a token id's occurrences sent to "
                 "its most used expert), and whether the task gives the router a gradient at all. Cells: mean "
                 "[95% t interval] over seeds; columns sort by a click on their header. How sure the differences are, "
                 "as rliable reports them: per quality column, each arm's probability of improvement over top-1 and "
                 "top-2 (a seed of the arm beats a seed of the reference) with a 95% percentile bootstrap interval, "
                 "* where it excludes 0.5 (a resolved difference); lm_benchmark_ranks.csv holds every ranked "
                 "column's ranks with bootstrap intervals."),
        section="benchmark", jobs=benchmark_jobs,
        tables=("lm_benchmark_quality", "lm_benchmark_balance", "lm_benchmark_routing", "lm_benchmark_improvement",
                "lm_benchmark_values", "lm_benchmark_improvement_values", "lm_benchmark_ranks"),
        shown=("lm_benchmark_quality", "lm_benchmark_balance", "lm_benchmark_routing", "lm_benchmark_improvement"),
        figures=("lm_benchmark", "lm_benchmark_coactivation"), make_tables="moe_rpo.tables:benchmark_tables",
        draw="moe_rpo.figures.training:draw_benchmark", view=_benchmark_view,
        facts="moe_rpo.report.render:benchmark_facts", on_base_model=True),
]}


TOY_EXPERIMENTS = tuple(e.name for e in EXPERIMENTS.values() if e.kind == "toy")  # the sections under `toy`
TRAINING_EXPERIMENTS = tuple(e.name for e in EXPERIMENTS.values() if e.kind == "training")  # a job per method, seed


def experiment_named(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; the registry has {list(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def all_jobs(config: dict) -> list[Job]:
    """Every job whose record some experiment reads, once (the routerless and benchmark experiments read
    Shakespeare runs)."""
    return sorted({job for experiment in EXPERIMENTS.values() for job in experiment.jobs(config)})
