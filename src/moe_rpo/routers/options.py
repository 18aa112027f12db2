"""Router options as the config sees them: each router class declares its options' descriptions and value
ranges (`Router.options`) beside its constructor, and the config schema's `router_spec` is generated from
the constructors' signatures and type hints, so that adding a router needs no schema edit."""
from __future__ import annotations

import inspect
import json
import types
import typing
from dataclasses import dataclass

STRUCTURAL = ("self", "dim", "num_experts", "k")  # what the model gives every router; not config options
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


@dataclass(frozen=True)
class Option:
    """One constructor option: a one-line description and the values it allows (JSON-schema bounds)."""
    description: str
    minimum: float | None = None            # value >= minimum
    exclusive_minimum: float | None = None  # value > exclusive_minimum
    maximum: float | None = None            # value <= maximum (sizes: what a machine can allocate)
    exclusive_maximum: float | None = None  # value < exclusive_maximum


def option_names(cls) -> list[str]:
    """The config options of a router class: its constructor's parameters beyond dim, num_experts and k."""
    return [name for name in inspect.signature(cls.__init__).parameters if name not in STRUCTURAL]


def _value_schema(hint) -> dict:
    """JSON schema of a type hint: bool, int, float, str, a Literal of values, or one of them | None."""
    if typing.get_origin(hint) is typing.Literal:
        return {"enum": list(typing.get_args(hint))}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [JSON_TYPES[arg] for arg in typing.get_args(hint) if arg is not type(None)]
        return {"type": [*kinds, "null"]}
    return {"type": JSON_TYPES[hint]}


def option_schema(cls, name: str) -> dict:
    """The schema of one option of a router class, from its type hint and its declared Option."""
    if name not in cls.options:
        raise TypeError(f"{cls.__name__}: constructor option {name!r} has no entry in {cls.__name__}.options")
    option, default = cls.options[name], inspect.signature(cls.__init__).parameters[name].default
    schema = {**_value_schema(typing.get_type_hints(cls.__init__)[name]),
              "description": f"{option.description} (default {json.dumps(default)})"}
    bounds = {"minimum": option.minimum, "exclusiveMinimum": option.exclusive_minimum, "maximum": option.maximum,
              "exclusiveMaximum": option.exclusive_maximum}
    return schema | {key: value for key, value in bounds.items() if value is not None}


def declared_schema(cls, name: str) -> dict:
    """The schema of a plugin router's option, from what its class declares: the type hint of its constructor
    parameter and, where `options` lists it, its range (a plugin need not declare either)."""
    if name in cls.options:
        return option_schema(cls, name)
    hint = typing.get_type_hints(cls.__init__).get(name)
    try:
        return _value_schema(hint) if hint is not None else {}
    except KeyError:  # a hint the config cannot express (a class, a list): the constructor checks it
        return {}


def spec_schema(methods: dict[str, type]) -> dict:
    """The config schema of a router spec {method: NAME, option: value, ...}: per method, the options its
    class takes, with their types, ranges and descriptions; and the plugin spec {method: plugin, target:
    "package.module:Class", options: {...}}, whose options its class checks when the config is checked."""
    branches = []
    for method, cls in sorted(methods.items()):
        names = option_names(cls)
        branches.append({"if": {"properties": {"method": {"const": method}}},
                         "then": {"properties": {name: option_schema(cls, name) for name in names},
                                  "propertyNames": {"enum": ["method", *names]}}})
    branches.append({"if": {"properties": {"method": {"const": "plugin"}}},
                     "then": {"required": ["target"], "propertyNames": {"enum": ["method", "target", "options"]},
                              "properties": {
                                  "target": {"type": "string", "pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
                                             "description": "the Router subclass, 'package.module:ClassName'"},
                                  "options": {"type": "object", "default": {},
                                              "description": "keyword arguments of its constructor"}}}})
    return {"type": "object", "required": ["method"], "description": "a router: its method and that method's options "
            "(method plugin: a Router subclass of another package, README 'Bring your own router')",
            "properties": {"method": {"type": "string", "enum": [*sorted(methods), "plugin"]}}, "allOf": branches}
