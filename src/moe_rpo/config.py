"""Load and check the pipeline config: the JSON schema (with defaults) plus cross-references."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators

TOY_EXPERIMENTS = ("routing", "collapse", "dilemma", "barrier")
TRAINING_EXPERIMENTS = ("shakespeare_moe", "pretraining")  # GPTs trained from scratch, one job per method and seed
LM_EXPERIMENTS = ("recovery", *TRAINING_EXPERIMENTS, "routerless", "benchmark")
DENSE = "dense"  # the method name of a training run without MoE layers
# the methods the paper compares on Shakespeare (its claims and curves): label -> (router, k)
SHAKESPEARE_PAPER_METHODS = {"top-1": ("standard", 1), "top-2": ("standard", 2), "EM": ("em", 1), "RPO": ("rpo", 1)}
EXPERIMENTS = TOY_EXPERIMENTS + LM_EXPERIMENTS


def table_stem(experiment: str) -> str:
    """Prefix of an experiment's tables and figures: toy_routing, ..., lm_recovery."""
    return f"{'toy' if experiment in TOY_EXPERIMENTS else 'lm'}_{experiment}"


class ConfigError(ValueError):
    """A config value that the pipeline refuses, with the key that holds it."""


def schema() -> dict:
    return yaml.safe_load(resources.files("moe_rpo").joinpath("config.schema.yaml").read_text())


def _with_defaults(validator_class):
    """A validator that fills in every missing property that has a default (as Snakemake's validate does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = yaml.safe_load(yaml.safe_dump(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate(config: dict) -> dict:
    """Fill defaults and check `config` in place; raise ConfigError naming the offending key."""
    if not isinstance(config, dict):
        raise ConfigError(f"config must be a mapping, got {type(config).__name__}")
    validator = _with_defaults(Draft202012Validator)(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid config:\n" + "\n".join(f"  {_key(e.absolute_path)}: {e.message}" for e in errors))
    check_references(config)
    return config


def validate_definition(instance: dict, definition: str) -> dict:
    """Fill defaults and check one part of a config against the schema's `definitions/<definition>`
    (e.g. a single corpus spec or training section); raise ConfigError naming the key."""
    root = schema()
    part = {"$schema": root["$schema"], "definitions": root["definitions"], "$ref": f"#/definitions/{definition}"}
    errors = sorted(_with_defaults(Draft202012Validator)(part).iter_errors(instance),
                    key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"invalid {definition}:\n" +
                          "\n".join(f"  {_key(e.absolute_path)}: {e.message}" for e in errors))
    return instance


def check_references(config: dict) -> None:
    """The checks the schema cannot express: names that must refer to something defined elsewhere."""
    defined = config["routers"]
    method_lists = {f"toy.{name}.methods": config["toy"][name]["methods"] for name in TOY_EXPERIMENTS}
    method_lists["recovery.methods"] = config["recovery"]["methods"]
    method_lists["benchmark.methods"] = config["benchmark"]["methods"]
    method_lists |= {f"{name}.methods": config[name]["methods"] for name in TRAINING_EXPERIMENTS}
    method_lists |= {f"routerless.{group}": config["routerless"][group] for group in ("fixed", "learned")}
    for where, methods in method_lists.items():
        for i, method in enumerate(methods):
            name = method["router"] if isinstance(method, dict) else method
            if name not in defined and not (name == DENSE and where.split(".")[0] in TRAINING_EXPERIMENTS):
                raise ConfigError(f"{where}.{i}: router {name!r} is not defined under 'routers' "
                                  f"(defined: {sorted(defined)})")
    for setting in config["benchmark"]["recovery"]["settings"]:
        if setting not in recovery_settings(config["recovery"]):
            raise ConfigError(f"benchmark.recovery.settings: {setting!r} is not a recovery setting "
                              f"(diff or sim<scale> with a scale in recovery.sim_scales: "
                              f"{list(recovery_settings(config['recovery']))})")
    for name in TRAINING_EXPERIMENTS:
        section = config[name]
        names = [method_name(m) for m in section["methods"]]
        if len(set(names)) < len(names):
            raise ConfigError(f"{name}.methods: a router and k appear twice: {names}")
        if section["moe_layers"] != "all" and max(section["moe_layers"]) >= section["model"]["n_layer"]:
            raise ConfigError(f"{name}.moe_layers: {section['moe_layers']} names a block the model "
                              f"(n_layer={section['model']['n_layer']}) does not have")
        if section["train"]["block_size"] > section["model"]["block_size"]:
            raise ConfigError(f"{name}.train.block_size: {section['train']['block_size']} exceeds model.block_size "
                              f"{section['model']['block_size']}")
    runs = {method_name(m) for m in config["shakespeare_moe"]["methods"]}
    for group in ("fixed", "learned"):
        missing = [method_name(m) for m in config["routerless"][group] if method_name(m) not in runs]
        if missing:
            raise ConfigError(f"routerless.{group}: {missing} are not among the shakespeare_moe.methods, whose runs "
                              f"the routerless comparison reads")
    trains = {f"{name}.train": config[name]["train"] for name in ("base_model", "recovery", *TRAINING_EXPERIMENTS)}
    trains["benchmark.recovery.train"] = config["benchmark"]["recovery"]["train"]
    for where, train in trains.items():
        if train["batch_size"] % train["processes"]:
            raise ConfigError(f"{where}: batch_size {train['batch_size']} (the global batch) is not divisible by "
                              f"processes {train['processes']}")
    for where in ("base_model", "recovery", *TRAINING_EXPERIMENTS):
        if config[where]["corpus"] not in config["corpora"]:
            raise ConfigError(f"{where}.corpus: {config[where]['corpus']!r} is not defined under 'corpora' "
                              f"(defined: {sorted(config['corpora'])})")
    recovery, base = config["recovery"], config["base_model"]
    if config["claims"]["recovery_sim_scale"] not in recovery["sim_scales"]:
        raise ConfigError(f"claims.recovery_sim_scale: {config['claims']['recovery_sim_scale']} is not one of "
                          f"recovery.sim_scales {recovery['sim_scales']}")
    if base["source"] == "pretrain":
        n_layer = base["model"]["n_layer"]
        if recovery["layers"] != "all" and max(recovery["layers"]) >= n_layer:
            raise ConfigError(f"recovery.layers: {recovery['layers']} names a layer the base model "
                              f"(n_layer={n_layer}) does not have")
        for where, train in (("base_model", base["train"]), ("recovery", recovery["train"])):
            if train["block_size"] > base["model"]["block_size"]:
                raise ConfigError(f"{where}.train.block_size: {train['block_size']} exceeds the base model's "
                                  f"block_size {base['model']['block_size']}")


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
        config = _overlay(config, yaml.safe_load(path.read_text()) or {})
    config = validate(config)
    check_references(config)
    return config


def experiment_settings(config: dict, experiment: str) -> dict:
    """The settings one toy experiment runs with: its section plus the specs of the routers it uses."""
    if experiment not in TOY_EXPERIMENTS:
        raise ConfigError(f"unknown toy experiment {experiment!r}; choose one of {list(TOY_EXPERIMENTS)}")
    section = dict(config["toy"][experiment])
    names = [m["router"] if isinstance(m, dict) else m for m in section["methods"]]
    section["routers"] = {name: config["routers"][name] for name in names}
    return section


def benchmark_toy_settings(config: dict) -> dict:
    """Toy 1 (routing) settings that run exactly the benchmark's (router, k) pairs."""
    section = dict(config["toy"]["routing"], runs=config["benchmark"]["methods"])
    section["routers"] = {m["router"]: config["routers"][m["router"]] for m in section["runs"]}
    return section


def corpus_spec(config: dict, name: str) -> dict:
    """The spec of one named corpus (config['corpora'][name])."""
    if name not in config["corpora"]:
        raise ConfigError(f"no corpus {name!r} under 'corpora' (defined: {sorted(config['corpora'])})")
    return config["corpora"][name]


def recovery_settings(recovery: dict) -> dict[str, dict]:
    """The settings of the recovery experiment (its config section) by name: 'diff' and one 'sim{scale}'
    per SIM scale."""
    settings = {"diff": {"name": "diff", "mode": "diff", "scale": 0.0}}
    for scale in recovery["sim_scales"]:
        settings[f"sim{scale:g}"] = {"name": f"sim{scale:g}", "mode": "sim", "scale": scale}
    return settings


def method_name(method: dict) -> str:
    """A run's method label: 'dense', or '<router>_k<k>' (also its directory name)."""
    return DENSE if method["router"] == DENSE else f"{method['router']}_k{method['k']}"


def with_router_specs(section: dict, config: dict) -> dict:
    """An experiment section plus the specs of the routers its methods name."""
    section = dict(section)
    section["routers"] = {m["router"]: config["routers"][m["router"]] for m in section["methods"]
                          if m["router"] != DENSE}
    return section


def recovery_run_settings(config: dict, benchmark: bool = False) -> dict:
    """What a recovery job runs with: the recovery section plus the specs of the routers it names; for the
    benchmark, with the benchmark's methods and training settings."""
    section = dict(config["recovery"])
    if benchmark:
        section |= {"methods": config["benchmark"]["methods"], "train": config["benchmark"]["recovery"]["train"]}
    return with_router_specs(section, config)


def training_run_settings(config: dict, experiment: str, method: str) -> dict:
    """What one training job runs with: the experiment's section, its one method and that router's spec."""
    if experiment not in TRAINING_EXPERIMENTS:
        raise ConfigError(f"unknown training experiment {experiment!r}; choose one of {list(TRAINING_EXPERIMENTS)}")
    section = config[experiment]
    chosen = [m for m in section["methods"] if method_name(m) == method]
    if not chosen:
        raise ConfigError(f"{experiment} has no method {method!r} (it runs {[method_name(m) for m in section['methods']]})")
    return with_router_specs({**section, "methods": chosen}, config)
