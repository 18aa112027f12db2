"""The config's JSON schema (the YAML file, with the router specs generated from the router classes) and its
validator, which fills in every default."""
from __future__ import annotations

import copy
import functools
from importlib import resources

import yaml
from jsonschema import Draft202012Validator, validators

from moe_rpo.values import ConfigError


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


def keys_typed_as(definition: str) -> list[tuple[str, ...]]:
    """Every key of a config (as a path, in the schema's order) whose value the schema types as
    `definitions/<definition>`, e.g. every list of methods ('router_methods')."""
    target, definitions, found = f"#/definitions/{definition}", _schema()["definitions"], []

    def walk(node: dict, path: tuple[str, ...], followed: frozenset) -> None:
        ref = node.get("$ref")
        if ref == target:
            found.append(path)
            return
        if ref and ref not in followed:  # another definition: its keys continue this path
            walk(definitions[ref.rsplit("/", 1)[1]], path, followed | {ref})
        for alternative in node.get("oneOf", []):  # e.g. a list of methods or null
            walk(alternative, path, followed)
        for key, child in node.get("properties", {}).items():
            walk(child, path + (key,), followed)

    walk(_schema(), (), frozenset())
    return found


def _overlay(base: dict, update: dict) -> dict:
    """`update` merged into `base` as Snakemake merges --configfile files: mappings key by key, the rest replaced."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _overlay(base[key], value)
        else:
            base[key] = value
    return base
