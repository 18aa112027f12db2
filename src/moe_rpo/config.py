"""Load and check the pipeline config: the JSON schema (with defaults) plus cross-references."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators

TOY_EXPERIMENTS = ("routing", "collapse", "dilemma", "barrier")


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


def check_references(config: dict) -> None:
    """The check the schema cannot express: every method an experiment names is a defined router."""
    defined = config["routers"]
    for experiment in TOY_EXPERIMENTS:
        for i, method in enumerate(config["toy"][experiment]["methods"]):
            name = method["router"] if isinstance(method, dict) else method
            if name not in defined:
                raise ConfigError(f"toy.{experiment}.methods.{i}: router {name!r} is not defined under 'routers' "
                                  f"(defined: {sorted(defined)})")


def load(path: str | Path) -> dict:
    """Read, fill defaults and check a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    return validate(yaml.safe_load(path.read_text()) or {})


def experiment_settings(config: dict, experiment: str) -> dict:
    """The settings one toy experiment runs with: its section plus the specs of the routers it uses."""
    if experiment not in TOY_EXPERIMENTS:
        raise ConfigError(f"unknown toy experiment {experiment!r}; choose one of {list(TOY_EXPERIMENTS)}")
    section = dict(config["toy"][experiment])
    names = [m["router"] if isinstance(m, dict) else m for m in section["methods"]]
    section["routers"] = {name: config["routers"][name] for name in names}
    return section


def corpus_spec(config: dict, name: str) -> dict:
    """The spec of one named corpus (config['corpora'][name])."""
    if name not in config["corpora"]:
        raise ConfigError(f"no corpus {name!r} under 'corpora' (defined: {sorted(config['corpora'])})")
    return config["corpora"][name]
