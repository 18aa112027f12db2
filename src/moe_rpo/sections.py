"""What each job runs with: the slice of a validated config that one job kind reads (a toy, a recovery setting,
a layer set, a training method, a reading), with the specs of the routers it builds. A job gets only its slice, so
changing another experiment's settings never reruns it."""
from __future__ import annotations

from moe_rpo.values import DENSE, Arm, ConfigError, RecoverySetting, layer_set_label


def seed_list(seeds: int | list[int]) -> list[int]:
    """A toy_seeds value as a list: itself, or N as seeds 0 to N-1."""
    return list(range(seeds)) if isinstance(seeds, int) else seeds


def toy_seeds(config: dict, experiment: str) -> list[int]:
    """The seeds a toy runs."""
    return seed_list(config["toy"][experiment]["seeds"])


def _toy_run_section(config: dict, experiment: str, seeds: list[int]) -> dict:
    """A toy's section for its one job: the seeds it runs, and the seed whose full series the figures show."""
    section = {key: value for key, value in config["toy"][experiment].items() if key != "seeds"}
    return section | {"seeds": seeds, "shown_seed": config["report"]["trajectory_seed"]}


def experiment_settings(config: dict, experiment: str) -> dict:
    """The settings one toy experiment runs with: its run section plus the specs of the routers it uses."""
    if experiment not in config["toy"]:
        raise ConfigError(f"unknown toy experiment {experiment!r}; choose one of {list(config['toy'])}")
    section = _toy_run_section(config, experiment, toy_seeds(config, experiment))
    section["routers"] = {m["router"]: config["routers"][m["router"]] for m in section["methods"]}
    return section


def benchmark_toy_settings(config: dict) -> dict:
    """Toy 1 (routing) settings that run exactly the benchmark's (router, k) pairs."""
    from moe_rpo.routers import router_class  # noqa: PLC0415  (torch: the config check has imported it already)

    section = _toy_run_section(config, "routing", seed_list(config["benchmark"]["toy"]["seeds"]))
    # MoE++'s null experts need token features, which the toy has not: its toy column says 'not run'
    section["methods"] = [m for m in config["benchmark"]["methods"]
                          if not router_class(config["routers"][m["router"]]).adds_null_experts]
    section["routers"] = {m["router"]: config["routers"][m["router"]] for m in section["methods"]}
    return section


def corpus_spec(config: dict, name: str) -> dict:
    """The spec of one named corpus (config['corpora'][name])."""
    if name not in config["corpora"]:
        raise ConfigError(f"no corpus {name!r} under 'corpora' (defined: {sorted(config['corpora'])})")
    return config["corpora"][name]


def recovery_settings(recovery: dict) -> dict[str, RecoverySetting]:
    """The settings of the recovery experiment (its config section) by name: DIFF and one SIM per scale."""
    settings = [RecoverySetting("diff"), *(RecoverySetting("sim", scale) for scale in recovery["sim_scales"])]
    return {setting.name: setting for setting in settings}


def with_router_specs(section: dict, config: dict) -> dict:
    """An experiment section plus the specs of the routers its methods name."""
    section = dict(section)
    section["routers"] = {m["router"]: config["routers"][m["router"]] for m in section["methods"]
                          if m["router"] != DENSE}
    return section


READINGS_EXPERIMENT = "shakespeare_moe"  # the experiment whose runs claims.readings vary


def reading_methods(config: dict, reading: str) -> list[dict]:
    """The methods of the readings' experiment that a reading reruns: those of the routers it names."""
    routers = set(config["claims"]["readings"][reading]["routers"])
    return [m for m in config[READINGS_EXPERIMENT]["methods"] if m["router"] in routers]


def reading_run_settings(config: dict, reading: str, method: str) -> dict:
    """A reading run's settings: the training run's, with the reading's router options and training changes, and
    the reading itself (its name and description, which the tables read)."""
    spec = config["claims"]["readings"][reading]
    settings = training_run_settings(config, READINGS_EXPERIMENT, method)
    router = settings["methods"][0]["router"]
    settings["routers"] = {router: {**settings["routers"][router], **spec["options"]}}
    changes = dict(spec["train"])
    scale = changes.pop("steps_scale", 1)
    train = settings["train"] | changes
    for key in ("steps", "warmup_steps", "eval_every", "checkpoint_every"):
        train[key] *= scale
    return settings | {"train": train, "reading": {"name": reading, "description": spec["description"]}}


def one_method(methods: list[dict], slug: str, where: str) -> dict:
    """The method of `methods` named by its slug (<router>_k<k>, or dense)."""
    chosen = [m for m in methods if Arm.of(m).slug == slug]
    if not chosen:
        raise ConfigError(f"{where} has no method {slug!r} (it runs {[Arm.of(m).slug for m in methods]})")
    return chosen[0]


def job_method(settings: dict, job: str) -> dict:
    """The one method a job's settings name (recovery and training jobs train one each)."""
    if len(settings["methods"]) != 1:
        raise ValueError(f"{job} trains one method, got {len(settings['methods'])}")
    return settings["methods"][0]


def recovery_methods(config: dict, setting: str) -> list[dict]:
    """The methods the recovery jobs of `setting` train, one job each: the recovery experiment's, and in the router
    benchmark's settings also the benchmark's other methods (so the benchmark reads the same runs, never repeats
    them)."""
    methods = list(config["recovery"]["methods"])
    if setting in config["benchmark"]["recovery"]["settings"]:
        runs = {Arm.of(m) for m in methods}
        methods += [m for m in config["benchmark"]["recovery"]["methods"] if Arm.of(m) not in runs]
    return methods


def recovery_run_settings(config: dict, setting: str, method: str) -> dict:
    """What the recovery job of one setting and method runs with: the recovery section, that one of the setting's
    methods (recovery_methods) and the spec of its router."""
    chosen = one_method(recovery_methods(config, setting), method, f"recovery setting {setting}")
    return with_router_specs(dict(config["recovery"], methods=[chosen]), config)


def layer_sweep_sets(recovery: dict) -> dict:
    """The layer sweep's sets of MoE layers by label, but for `layers`, whose runs the sweep reads already."""
    return {layer_set_label(layers): layers for layers in recovery["layer_sweep"]["layer_sets"]
            if layers != recovery["layers"]}


def recovery_layers_settings(config: dict, label: str, method: str) -> dict:
    """What a layer-sweep job runs with: the recovery section with that set of MoE layers and one of the sweep's
    methods."""
    sets = layer_sweep_sets(config["recovery"])
    if label not in sets:
        raise ConfigError(f"recovery.layer_sweep has no layer set {label!r} (it has {list(sets)})")
    chosen = one_method(config["recovery"]["layer_sweep"]["methods"], method, "recovery.layer_sweep")
    return with_router_specs(dict(config["recovery"], layers=sets[label], methods=[chosen]), config)


# The recovery oracle replaces every router by a fixed one, so the model it probes needs a router only to be built:
# this one (the recovery experiment's standard top-1), the same in every recovery job and the identifiability sweep.
ORACLE_PROBE_ROUTER = {"method": "softmax_topk", "normalize": False}


def recovery_design_settings(config: dict) -> dict:
    """What the identifiability sweep runs with: the recovery section's design, experts and evaluation
    windows (the oracle replaces the routers, so none is named). Only these, so that a change of the methods or
    the trained settings does not rerun it."""
    return {key: config["recovery"][key] for key in ("design", "num_experts", "train")}


def training_run_settings(config: dict, experiment: str, method: str) -> dict:
    """What one training job runs with: the experiment's section, its one method and that router's spec."""
    if "model" not in config.get(experiment, {}) or "methods" not in config[experiment]:
        raise ConfigError(f"unknown training experiment {experiment!r}: no section with a model and methods")
    section = config[experiment]
    return with_router_specs({**section, "methods": [one_method(section["methods"], method, experiment)]}, config)


def arm_router(config: dict, arm: str) -> str:
    """The router name that plays a claim's arm (claims.arms; 'dense' is itself)."""
    return arm if arm == DENSE else config["claims"]["arms"][arm]


def toy_num_experts(section: dict) -> int:
    """How many experts a toy's section defines (fixed experts, or the optima the trained experts start at)."""
    return len(section["experts"] if "experts" in section else section["expert_optima"])
