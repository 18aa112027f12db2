"""Load and check the pipeline config: the JSON schema (with defaults) plus cross-references."""
from __future__ import annotations

import copy
import functools
import math
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import yaml
from jsonschema import Draft202012Validator, validators

TOY_EXPERIMENTS = ("routing", "collapse", "dilemma", "barrier")  # the sections under `toy`
TRAINING_EXPERIMENTS = ("shakespeare_moe", "pretraining")  # GPTs trained from scratch, one job per method and seed
DENSE = "dense"  # the method name of a training run without MoE layers
TOY_DIM = 1  # the toys' routers see one constant feature (GPT features are wider)
# Toys 1 and 3 find the best standard-reachable point by a grid search over 401^k weight vectors per
# expert subset: k = 2 takes a fraction of a second, k = 3 gigabytes, k = 9 more memory than any machine has.
MAX_TOY_K = 2


class Arm(NamedTuple):
    """A method: a router (its name under `routers`, or 'dense') and how many experts each token uses."""
    router: str
    k: int

    @classmethod
    def of(cls, method: dict) -> Arm:
        return cls(method["router"], method["k"])

    @property
    def slug(self) -> str:
        """Its name in file names, array keys and on the command line: 'rpo_k1', or 'dense'."""
        return DENSE if self.router == DENSE else f"{self.router}_k{self.k}"


class RecoverySetting(NamedTuple):
    """A setting of the recovery experiment: DIFF (random distractor experts) or SIM (the pretrained expert
    plus noise of relative size `scale`)."""
    mode: str  # "diff" or "sim"
    scale: float = 0.0

    @property
    def name(self) -> str:
        """'diff' or 'sim<scale>' (6 significant digits), as in file names and on the command line."""
        return "diff" if self.mode == "diff" else f"sim{self.scale:g}"

    def as_dict(self) -> dict:
        return {"name": self.name, "mode": self.mode, "scale": self.scale}


class ConfigError(ValueError):
    """A config value that the pipeline refuses, with the key that holds it."""


@functools.cache
def _schema() -> dict:
    from moe_rpo.routers import METHODS  # noqa: PLC0415  (torch: only once a config is checked)
    from moe_rpo.routers.options import spec_schema  # noqa: PLC0415

    loaded = yaml.safe_load(resources.files("moe_rpo").joinpath("config.schema.yaml").read_text())
    loaded["definitions"]["router_spec"] = spec_schema(METHODS)  # derived from the router constructors
    return loaded


def schema() -> dict:
    """The config's JSON schema: the YAML file, with the router specs generated from the router classes."""
    return copy.deepcopy(_schema())


def _with_defaults(validator_class):
    """A validator that fills in every missing property that has a default, and merges a mapping default key
    by key under the mapping a config gives (as `snakemake --configfile` merges files)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" not in subschema:
                    continue
                default = copy.deepcopy(subschema["default"])
                if name not in instance:
                    instance[name] = default
                elif isinstance(default, dict) and isinstance(instance[name], dict):
                    instance[name] = _overlay(default, instance[name])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


# JSON Schema counts 2.0 as an integer; a whole-number float in an integer field (steps: 10.0) fails later, in torch
STRICT = validators.extend(Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)))


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _message(error) -> str:
    """One line per schema error; an unknown key names where it was found and the keys allowed there."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"unknown key(s) {unknown}; allowed here: {allowed}"
    return error.message


def _non_finite(value, path=()) -> tuple | None:
    """(key path, value) of the first NaN or infinite number in a config, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return next((found for key, child in children if (found := _non_finite(child, (*path, key))) is not None), None)


def validate(config: dict) -> dict:
    """Fill defaults and check `config` in place; raise ConfigError naming the offending key."""
    if not isinstance(config, dict):
        raise ConfigError(f"config must be a mapping, got {type(config).__name__}")
    if (found := _non_finite(config)) is not None:  # NaN passes every range check
        raise ConfigError(f"invalid config:\n  {_key(found[0])}: {found[1]} is not a finite number")
    validator = _with_defaults(STRICT)(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid config:\n" + "\n".join(f"  {_key(e.absolute_path)}: {_message(e)}" for e in errors))
    for section in (config["recovery"], *(config[name] for name in TRAINING_EXPERIMENTS)):
        if section["seeds"] is None:  # null: the global seeds
            section["seeds"] = list(config["seeds"])
    check_references(config)
    return config


def typed_command_line_values(config: dict, overrides: dict) -> dict:
    """Retype the values `snakemake --config key=value` gave: Snakemake parses a list or mapping value with
    YAML's BaseLoader, which keeps every scalar inside it a string (seeds='[0,1]' gives ['0', '1']). Each
    such string is read again as YAML reads it in a config file, and merged into `config` in place."""
    def typed(value):
        if isinstance(value, dict):
            return {key: typed(item) for key, item in value.items()}
        if isinstance(value, list):
            return [typed(item) for item in value]
        return yaml.safe_load(value) if isinstance(value, str) else value

    return _overlay(config, {key: typed(value) for key, value in overrides.items() if isinstance(value, (dict, list))})


def validate_definition(instance: dict, definition: str) -> dict:
    """Fill defaults and check one part of a config against the schema's `definitions/<definition>`
    (e.g. a single corpus spec or training section); raise ConfigError naming the key."""
    root = schema()
    part = {"$schema": root["$schema"], "definitions": root["definitions"], "$ref": f"#/definitions/{definition}"}
    errors = sorted(_with_defaults(STRICT)(part).iter_errors(instance),
                    key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"invalid {definition}:\n" +
                          "\n".join(f"  {_key(e.absolute_path)}: {e.message}" for e in errors))
    return instance


def _method_lists(config: dict) -> dict[str, list]:
    """Every list of methods in the config, by its key."""
    lists = {f"toy.{name}.methods": config["toy"][name]["methods"] for name in TOY_EXPERIMENTS}
    lists["recovery.methods"] = config["recovery"]["methods"]
    lists["recovery.layer_sweep.methods"] = config["recovery"]["layer_sweep"]["methods"]
    lists["benchmark.methods"] = config["benchmark"]["methods"]
    lists |= {f"{name}.methods": config[name]["methods"] for name in TRAINING_EXPERIMENTS}
    lists |= {f"routerless.{group}": config["routerless"][group] for group in ("fixed", "learned")}
    return lists


def _router_uses(config: dict):
    """(key, router name, k, number of experts, feature dim) for every router an experiment builds; toy uses have
    feature dim 1 (TOY_DIM)."""
    toy = config["toy"]
    toy_experts = {"routing": len(toy["routing"]["experts"]), "collapse": len(toy["collapse"]["expert_optima"]),
                   "dilemma": len(toy["dilemma"]["experts"]), "barrier": len(toy["barrier"]["experts"])}
    for name, k in (("routing", toy["routing"]["ks"]), ("collapse", [toy["collapse"]["k"]]),
                    ("dilemma", [toy["dilemma"]["k"]])):
        for i, router in enumerate(toy[name]["methods"]):
            yield from ((f"toy.{name}.methods.{i}", router, each, toy_experts[name], TOY_DIM) for each in k)
    for i, m in enumerate(toy["barrier"]["methods"]):
        yield f"toy.barrier.methods.{i}", m["router"], m["k"], toy_experts["barrier"], TOY_DIM
    recovery_dim = config["base_model"]["model"]["n_embd"]
    recovery = config["recovery"]
    for where, methods in (("recovery.methods", recovery["methods"]),
                           ("recovery.layer_sweep.methods", recovery["layer_sweep"]["methods"])):
        for i, m in enumerate(methods):
            yield f"{where}.{i}", m["router"], m["k"], recovery["num_experts"], recovery_dim
    for i, m in enumerate(config["benchmark"]["methods"]):  # the benchmark runs each method in toy 1 and recovery
        yield f"benchmark.methods.{i}", m["router"], m["k"], toy_experts["routing"], TOY_DIM
        yield f"benchmark.methods.{i}", m["router"], m["k"], config["recovery"]["num_experts"], recovery_dim
    for name in TRAINING_EXPERIMENTS:
        section = config[name]
        for i, m in enumerate(section["methods"]):
            if m["router"] != DENSE:  # fine-grained experts: granularity times the experts and the k
                yield (f"{name}.methods.{i}", m["router"], m["k"] * section["granularity"],
                       section["num_experts"] * section["granularity"], section["model"]["n_embd"])


def check_plugin_options(cls, options: dict, where: str) -> None:
    """A plugin's options checked as a built-in router's are: by the type hints of its constructor and the ranges
    its `options` declare (routers/options.py)."""
    from moe_rpo.routers.options import declared_schema, option_names  # noqa: PLC0415

    for option, value in options.items():
        if option in option_names(cls):
            errors = list(STRICT(declared_schema(cls, option)).iter_errors(value))
            if errors:
                raise ConfigError(f"{where}.{option}: {errors[0].message}")


def check_routers_build(config: dict) -> None:
    """Build every (router, k) once with the number of experts it will route to, so that a value the
    router refuses (k above the number of experts, BASE with k > 1, ...) fails now, naming the key."""
    import torch  # noqa: PLC0415  (only here: the rest of the config check needs no torch)

    from moe_rpo.code_inputs import PLUGIN  # noqa: PLC0415
    from moe_rpo.routers import build_router, router_class  # noqa: PLC0415
    from moe_rpo.routers.plugin import check_interface  # noqa: PLC0415

    for name, spec in config["routers"].items():  # a plugin: importable, a Router, options as it declares them
        if spec["method"] == PLUGIN:
            try:
                cls = router_class(spec)
            except ValueError as error:
                raise ConfigError(f"routers.{name}: {error}") from None
            check_plugin_options(cls, spec["options"], f"routers.{name}.options")

    for group, trainable in (("fixed", False), ("learned", True)):  # what the routerless comparison compares
        for i, m in enumerate(config["routerless"][group]):
            method = config["routers"][m["router"]]["method"]
            if router_class(config["routers"][m["router"]]).trainable != trainable:
                raise ConfigError(f"routerless.{group}.{i}: router {m['router']!r} ({method}) "
                                  f"{'trains' if not trainable else 'has nothing to train'}; the {group} group "
                                  f"takes {'fixed' if not trainable else 'learned'} routers only")

    named = ((f"routers.{name}", name, 1, 4, 8) for name in config["routers"])  # each named router, used or not
    checked = set()
    for where, name, k, experts, dim in (*named, *_router_uses(config)):
        if dim == TOY_DIM and router_class(config["routers"][name]).adds_null_experts:
            if where.startswith("benchmark."):
                continue  # the benchmark's toy column leaves it out (benchmark_toy_settings)
            raise ConfigError(f"{where}: router {name!r} adds null experts (MoE++), which act on token features "
                              f"that the toys do not have; use it in recovery and the training experiments")
        if (name, k, experts, dim) in checked:
            continue
        checked.add((name, k, experts, dim))
        spec = config["routers"][name]
        with torch.random.fork_rng(devices=[]):  # building draws random weights: leave the caller's stream alone
            try:
                router = build_router(spec, dim, experts, k)
                if spec["method"] == PLUGIN:  # at every shape it will route, in training and evaluation mode
                    check_interface(router)
            except ValueError as error:
                raise ConfigError(f"{where}: router {name!r} with k={k} over {experts} experts: {error}") from None


def check_references(config: dict) -> None:
    """The checks the schema cannot express: names that must refer to something defined elsewhere, values
    that must agree with each other, and routers that must build."""
    defined = config["routers"]
    for where, methods in _method_lists(config).items():
        for i, method in enumerate(methods):
            name = method["router"] if isinstance(method, dict) else method
            if name not in defined and not (name == DENSE and where.split(".")[0] in TRAINING_EXPERIMENTS):
                raise ConfigError(f"{where}.{i}: router {name!r} is not defined under 'routers' "
                                  f"(defined: {sorted(defined)})")
        names = [Arm.of(m).slug if isinstance(m, dict) else m for m in methods]
        if len(set(names)) < len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"{where}: {twice} appear(s) more than once (each method runs and is reported once)")
    names = [RecoverySetting("sim", scale).name for scale in config["recovery"]["sim_scales"]]
    if len(set(names)) < len(names):
        raise ConfigError(f"recovery.sim_scales: {config['recovery']['sim_scales']} give the settings {names}, "
                          f"some twice (a setting is named by its scale to 6 significant digits)")
    for where, settings in (("benchmark.recovery.settings", config["benchmark"]["recovery"]["settings"]),
                            ("recovery.layer_sweep.settings", config["recovery"]["layer_sweep"]["settings"])):
        for setting in settings:
            if setting not in recovery_settings(config["recovery"]):
                raise ConfigError(f"{where}: {setting!r} is not a recovery setting "
                                  f"(diff or sim<scale> with a scale in recovery.sim_scales: "
                                  f"{list(recovery_settings(config['recovery']))})")
    for where, ks in [("toy.routing.ks", config["toy"]["routing"]["ks"]), ("toy.dilemma.k", [config["toy"]["dilemma"]["k"]]),
                      *((f"benchmark.methods.{i}.k", [m["k"]]) for i, m in enumerate(config["benchmark"]["methods"]))]:
        if max(ks) > MAX_TOY_K:
            raise ConfigError(f"{where}: k={max(ks)} is above {MAX_TOY_K}, the largest k toys 1 and 3 support (every "
                              f"benchmark method runs in toy 1): their reachable-point grid search has 401^k points")
    models = {f"{name}.model": config[name]["model"] for name in ("base_model", *TRAINING_EXPERIMENTS)}
    for where, model in models.items():
        if model["n_embd"] % model["n_head"]:
            raise ConfigError(f"{where}.n_embd: {model['n_embd']} is not divisible by n_head {model['n_head']}")
    for name in TRAINING_EXPERIMENTS:
        section = config[name]
        if section["moe_layers"] != "all" and max(section["moe_layers"]) >= section["model"]["n_layer"]:
            raise ConfigError(f"{name}.moe_layers: {section['moe_layers']} names a block the model "
                              f"(n_layer={section['model']['n_layer']}) does not have")
        if (4 * section["model"]["n_embd"]) % section["granularity"]:
            raise ConfigError(f"{name}.granularity: {section['granularity']} does not divide the experts' hidden width "
                              f"4 * model.n_embd = {4 * section['model']['n_embd']}")
        if section["train"]["block_size"] > section["model"]["block_size"]:
            raise ConfigError(f"{name}.train.block_size: {section['train']['block_size']} exceeds model.block_size "
                              f"{section['model']['block_size']}")
    runs = {Arm.of(m) for m in config["shakespeare_moe"]["methods"]}
    for group in ("fixed", "learned"):
        missing = [Arm.of(m).slug for m in config["routerless"][group] if Arm.of(m) not in runs]
        if missing:
            raise ConfigError(f"routerless.{group}: {missing} are not among the shakespeare_moe.methods, whose runs "
                              f"the routerless comparison reads")
    trains = {f"{name}.train": config[name]["train"] for name in ("base_model", "recovery", *TRAINING_EXPERIMENTS)}
    for where, train in trains.items():
        if train["batch_size"] % train["processes"]:
            raise ConfigError(f"{where}: batch_size {train['batch_size']} (the global batch) is not divisible by "
                              f"processes {train['processes']}")
        if (train["batch_size"] // train["processes"]) % train["grad_accum"]:
            raise ConfigError(f"{where}: the {train['batch_size'] // train['processes']} rows of a process's batch "
                              f"do not split into grad_accum {train['grad_accum']} equal micro-batches")
    for where in ("base_model", "recovery", *TRAINING_EXPERIMENTS):
        if config[where]["corpus"] not in config["corpora"]:
            raise ConfigError(f"{where}.corpus: {config[where]['corpus']!r} is not defined under 'corpora' "
                              f"(defined: {sorted(config['corpora'])})")
    for name in TOY_EXPERIMENTS:
        if config["report"]["trajectory_seed"] not in toy_seeds(config, name):
            raise ConfigError(f"report.trajectory_seed: {config['report']['trajectory_seed']} is not one of the "
                              f"seeds of toy.{name} {toy_seeds(config, name)}")
    recovery, base = config["recovery"], config["base_model"]
    if config["claims"]["recovery_sim_scale"] not in recovery["sim_scales"]:
        raise ConfigError(f"claims.recovery_sim_scale: {config['claims']['recovery_sim_scale']} is not one of "
                          f"recovery.sim_scales {recovery['sim_scales']}")
    if base["source"] == "pretrain":
        n_layer = base["model"]["n_layer"]
        for where, layers in (("recovery.layers", recovery["layers"]),
                              *((f"recovery.layer_sweep.layer_sets.{i}", layers)
                                for i, layers in enumerate(recovery["layer_sweep"]["layer_sets"]))):
            if layers != "all" and max(layers) >= n_layer:
                raise ConfigError(f"{where}: {layers} names a layer the base model (n_layer={n_layer}) does not have")
        for where, train in (("base_model", base["train"]), ("recovery", recovery["train"])):
            if train["block_size"] > base["model"]["block_size"]:
                raise ConfigError(f"{where}.train.block_size: {train['block_size']} exceeds the base model's "
                                  f"block_size {base['model']['block_size']}")
    check_routers_build(config)
    check_claim_arms(config)
    check_readings(config)


def arm_router(config: dict, arm: str) -> str:
    """The router name that plays a claim's arm (claims.arms; 'dense' is itself)."""
    return arm if arm == DENSE else config["claims"]["arms"][arm]


def check_claim_arms(config: dict) -> None:
    """Every arm a claim compares is a defined router that its experiment runs (with the claim's k)."""
    from moe_rpo.experiments import EXPERIMENTS  # noqa: PLC0415  (the registry reads this module)

    for arm, name in config["claims"]["arms"].items():
        if name not in config["routers"]:
            raise ConfigError(f"claims.arms.{arm}: router {name!r} is not defined under 'routers' "
                              f"(defined: {sorted(config['routers'])})")
    for experiment in EXPERIMENTS.values():
        section = config
        for part in experiment.section.split("."):
            section = section[part]
        runs = [(m, k) for m in section["methods"] for k in section["ks"]] if "ks" in section else [
            (m["router"], m["k"]) if isinstance(m, dict) else (m, section["k"]) for m in section["methods"]]
        for arm, k in experiment.claim_arms:
            name = arm_router(config, arm)
            if not any(router == name and k in (None, run_k) for router, run_k in runs):
                raise ConfigError(f"{experiment.section}.methods: the claims compare {arm} ({name!r}"
                                  f"{f' with k={k}' if k else ''}), which this experiment does not run; add it, "
                                  f"or name another router in claims.arms.{arm}")


def _overlay(base: dict, update: dict) -> dict:
    """`update` merged into `base` as Snakemake merges --configfile files: mappings key by key, the rest replaced."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _overlay(base[key], value)
        else:
            base[key] = value
    return base


def load(*paths: str | Path) -> dict:
    """Read YAML config files, each merged over the ones before (config.yaml, then e.g. paper.yaml, as
    `snakemake --configfile` does), fill defaults and check the result."""
    config = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config file holds a mapping of sections, got {type(loaded).__name__}")
        config = _overlay(config, loaded or {})
    return validate(config)


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
    if experiment not in TOY_EXPERIMENTS:
        raise ConfigError(f"unknown toy experiment {experiment!r}; choose one of {list(TOY_EXPERIMENTS)}")
    section = _toy_run_section(config, experiment, toy_seeds(config, experiment))
    names = [m["router"] if isinstance(m, dict) else m for m in section["methods"]]
    section["routers"] = {name: config["routers"][name] for name in names}
    return section


def benchmark_toy_settings(config: dict) -> dict:
    """Toy 1 (routing) settings that run exactly the benchmark's (router, k) pairs."""
    from moe_rpo.routers import router_class  # noqa: PLC0415  (torch: the config check has imported it already)

    section = _toy_run_section(config, "routing", seed_list(config["benchmark"]["toy"]["seeds"]))
    # MoE++'s null experts need token features, which the toy has not: its toy column says 'not run'
    section["runs"] = [m for m in config["benchmark"]["methods"]
                       if not router_class(config["routers"][m["router"]]).adds_null_experts]
    section["routers"] = {m["router"]: config["routers"][m["router"]] for m in section["runs"]}
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


def check_readings(config: dict) -> None:
    """A reading names routers its experiment runs, and its options build each of them."""
    import torch  # noqa: PLC0415

    from moe_rpo.routers import build_router  # noqa: PLC0415

    runs = {m["router"] for m in config[READINGS_EXPERIMENT]["methods"]}
    for name, spec in config["claims"]["readings"].items():
        for router in spec["routers"]:
            if router not in runs:
                raise ConfigError(f"claims.readings.{name}.routers: {router!r} is not among the {READINGS_EXPERIMENT} "
                                  f"methods' routers {sorted(runs)}")
            merged = {**config["routers"][router], **spec["options"]}
            try:
                validate_definition(merged, "router_spec")
                with torch.random.fork_rng(devices=[]):  # building draws random weights: leave the stream alone
                    build_router(merged, 8, 4, 1)
            except (ConfigError, ValueError, TypeError) as error:
                message = str(error).replace("\n", " ")
                raise ConfigError(f"claims.readings.{name}.options: router {router!r}: {message}") from None


def recovery_methods(config: dict, setting: str) -> list[dict]:
    """The methods a recovery job of `setting` runs: the recovery experiment's, and in the router benchmark's
    settings also the benchmark's other methods (so the benchmark reads the same runs, never repeats them)."""
    methods = list(config["recovery"]["methods"])
    if setting in config["benchmark"]["recovery"]["settings"]:
        runs = {Arm.of(m) for m in methods}
        methods += [m for m in config["benchmark"]["methods"] if Arm.of(m) not in runs]
    return methods


def recovery_run_settings(config: dict, setting: str) -> dict:
    """What the recovery job of one setting runs with: the recovery section, its methods (recovery_methods)
    and the specs of the routers they name."""
    return with_router_specs(dict(config["recovery"], methods=recovery_methods(config, setting)), config)


def layer_set_label(layers) -> str:
    """A set of MoE layers as in file names and tables: 'all', or its indices joined by '_' (e.g. '0_1')."""
    return "all" if layers == "all" else "_".join(map(str, layers))


def layer_sweep_sets(recovery: dict) -> dict:
    """The layer sweep's sets of MoE layers by label, but for `layers`, whose runs the sweep reads already."""
    return {layer_set_label(layers): layers for layers in recovery["layer_sweep"]["layer_sets"]
            if layers != recovery["layers"]}


def recovery_layers_settings(config: dict, label: str) -> dict:
    """What a layer-sweep job runs with: the recovery section with that set of MoE layers and the sweep's
    methods."""
    sets = layer_sweep_sets(config["recovery"])
    if label not in sets:
        raise ConfigError(f"recovery.layer_sweep has no layer set {label!r} (it has {list(sets)})")
    sweep = config["recovery"]["layer_sweep"]
    return with_router_specs(dict(config["recovery"], layers=sets[label], methods=sweep["methods"]), config)


def recovery_design_settings(config: dict) -> dict:
    """What the identifiability sweep runs with: the recovery section's design, experts and evaluation
    windows, and its first method to build the model (the oracle replaces the routers). Only these, so that
    a change of the methods or the trained settings does not rerun it."""
    recovery = config["recovery"]
    section = {key: recovery[key] for key in ("design", "num_experts", "train")} | {"methods": recovery["methods"][:1]}
    return with_router_specs(section, config)


def training_run_settings(config: dict, experiment: str, method: str) -> dict:
    """What one training job runs with: the experiment's section, its one method and that router's spec."""
    if experiment not in TRAINING_EXPERIMENTS:
        raise ConfigError(f"unknown training experiment {experiment!r}; choose one of {list(TRAINING_EXPERIMENTS)}")
    section = config[experiment]
    chosen = [m for m in section["methods"] if Arm.of(m).slug == method]
    if not chosen:
        raise ConfigError(f"{experiment} has no method {method!r} (it runs {[Arm.of(m).slug for m in section['methods']]})")
    return with_router_specs({**section, "methods": chosen}, config)
