"""Load and check the pipeline config: YAML files merged as `snakemake --configfile` merges them, the schema with
its defaults (schema.py), then the cross-checks (config_checks.py). The Snakefile and every command call `load` or
`validate` here, the one validator."""
from __future__ import annotations

import math
from pathlib import Path

import yaml

from moe_rpo.config_checks import check_references
from moe_rpo.schema import STRICT, _key, _message, _overlay, _with_defaults, schema
from moe_rpo.values import ConfigError


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
    for section in config.values():  # a language-model section's seeds: null means the global seeds
        if isinstance(section, dict) and "seeds" in section and section["seeds"] is None:
            section["seeds"] = list(config["seeds"])
    benchmark = config["benchmark"]
    if benchmark["recovery"]["methods"] is None:  # null means every benchmark method
        benchmark["recovery"]["methods"] = list(benchmark["methods"])
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
