"""The adversarial run as a property: configs drawn from the schema's own keys, then mutated (wrong types, NaN,
huge and negative numbers, odd names, unknown keys), are either refused by `validate` with a short message that
names a key, or accepted, and then every router they name builds. `make test` draws a bounded number of
examples; HYPOTHESIS_PROFILE=long draws many more."""
import copy
import math
import os

from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from moe_rpo import config as cfg
from moe_rpo import values
from moe_rpo.routers import build_router

settings.register_profile("default", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DEFAULTS = cfg.validate({})
NUMBERS = st.one_of(st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.just(10**12), st.just(-(10**12)),
                    st.just(-1), st.just(0), st.just(2.0), st.just(0.5), st.floats(allow_nan=True))
ODD = st.one_of(NUMBERS, st.booleans(), st.none(), st.text(max_size=8), st.lists(st.integers(), max_size=3),
                st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
NAMES = st.one_of(st.sampled_from(["../x", "a/b", "", "..", "a{x}", "x$(id)", "a b", "x" * 300, "ok_name"]),
                  st.text(max_size=12))


def leaves(value, path=()):
    """Every key path of a config, leaves and mappings alike."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from leaves(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from leaves(child, (*path, i))


PATHS = [path for path in leaves(DEFAULTS) if path]


def set_at(config, path, value):
    for key in path[:-1]:
        config = config[key]
    config[path[-1]] = value


@st.composite
def mutated_configs(draw):
    config = copy.deepcopy(DEFAULTS)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        kind = draw(st.sampled_from(["value", "value", "unknown key", "router name", "drop"]))
        try:
            if kind == "value":
                set_at(config, path, draw(ODD))
            elif kind == "unknown key":
                parent = config
                for key in path[:-1]:
                    parent = parent[key]
                if isinstance(parent, dict):
                    parent[draw(st.text(min_size=1, max_size=6))] = draw(ODD)
            elif kind == "router name":
                config["routers"][draw(NAMES)] = {"method": draw(st.sampled_from(["softmax_topk", "rpo", "nope"]))}
            elif isinstance(path[-1], str) and len(path) > 1:
                parent = config
                for key in path[:-1]:
                    parent = parent[key]
                parent.pop(path[-1], None)
        except (KeyError, IndexError, TypeError):  # an earlier mutation changed the shape: keep what we have
            pass
    return config


@given(mutated_configs())
def test_a_mutated_config_is_refused_naming_a_key_or_builds_every_router(config):
    try:
        checked = cfg.validate(config)
    except values.ConfigError as error:
        message = str(error)
        assert len(message) < 2000 and "Traceback" not in message, message
        keys = {str(part) for path in PATHS for part in path} | {"config", "routers", "corpora", "<top level>"}
        assert any(key in message for key in keys), message  # names where the problem is
        return
    for name, spec in checked["routers"].items():
        build_router(spec, 8, 4, 1)
        assert name.replace("_", "").replace("-", "").isalnum()


def accepted(config) -> bool:
    try:
        cfg.validate(copy.deepcopy(config))
        return True
    except values.ConfigError:
        return False


def test_the_fuzzer_reaches_both_outcomes():
    """The property is not vacuous: the mutations give configs that are refused and configs that are accepted."""
    quick = settings(max_examples=200, deadline=None, database=None, derandomize=True)
    assert not accepted(find(mutated_configs(), lambda c: not accepted(c), settings=quick))
    assert accepted(find(mutated_configs(), accepted, settings=quick))
