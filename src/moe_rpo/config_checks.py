"""The checks of a config that its schema cannot express: names that must refer to something defined elsewhere,
values that must agree with each other, routers that must build at every shape an experiment routes, and the
claims' arms that the experiments must run."""
from __future__ import annotations

import functools

from moe_rpo.experiments import (
    BENCHMARK_SOURCES,
    EXPERIMENTS,
    TOY_EXPERIMENTS,
    TRAINING_EXPERIMENTS,
)
from moe_rpo.schema import STRICT, keys_typed_as, validate_definition
from moe_rpo.sections import (
    READINGS_EXPERIMENT,
    arm_router,
    recovery_settings,
    toy_num_experts,
    toy_seeds,
)
from moe_rpo.values import DENSE, MAX_TOY_K, TOY_DIM, Arm, ConfigError, RecoverySetting


def _method_lists(config: dict) -> dict[str, list]:
    """Every list of methods in the config (every key the schema types as router_methods), by its key."""
    return {".".join(path): functools.reduce(lambda section, key: section[key], path, config)
            for path in keys_typed_as("router_methods")}


def _router_uses(config: dict):
    """(key, router name, k, number of experts, feature dim) for every router an experiment builds; toy uses have
    feature dim 1 (TOY_DIM)."""
    for name in TOY_EXPERIMENTS:
        section = config["toy"][name]
        for i, m in enumerate(section["methods"]):
            yield f"toy.{name}.methods.{i}", m["router"], m["k"], toy_num_experts(section), TOY_DIM
    benchmark_toy = config["toy"][BENCHMARK_SOURCES["toy"][0]]  # the toy whose jobs the benchmark's toy column runs
    recovery_dim = config["base_model"]["model"]["n_embd"]
    recovery = config["recovery"]
    for where, methods in (("recovery.methods", recovery["methods"]),
                           ("recovery.layer_sweep.methods", recovery["layer_sweep"]["methods"])):
        for i, m in enumerate(methods):
            yield f"{where}.{i}", m["router"], m["k"], recovery["num_experts"], recovery_dim
    for i, m in enumerate(config["benchmark"]["methods"]):  # the benchmark runs each method in toy 1 and recovery
        yield f"benchmark.methods.{i}", m["router"], m["k"], toy_num_experts(benchmark_toy), TOY_DIM
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
            name = method["router"]
            if name not in defined and not (name == DENSE and where.split(".")[0] in TRAINING_EXPERIMENTS):
                raise ConfigError(f"{where}.{i}: router {name!r} is not defined under 'routers' "
                                  f"(defined: {sorted(defined)})")
        names = [Arm.of(m).slug for m in methods]
        if len(set(names)) < len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"{where}: {twice} appear(s) more than once (each method runs and is reported once)")
    offered = {Arm.of(m) for m in config["benchmark"]["methods"]}
    for i, m in enumerate(config["benchmark"]["recovery"]["methods"]):
        if Arm.of(m) not in offered:
            raise ConfigError(f"benchmark.recovery.methods.{i}: {Arm.of(m).slug} is not among benchmark.methods "
                              f"(the benchmark's recovery settings train a choice of its methods)")
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
    bounded = {f"{where}.{i}.k": m["k"] for where in ("toy.routing.methods", "toy.dilemma.methods", "benchmark.methods")
               for i, m in enumerate(_method_lists(config)[where])}
    for where, k in bounded.items():
        if k > MAX_TOY_K:
            raise ConfigError(f"{where}: k={k} is above {MAX_TOY_K}, the largest k toys 1 and 3 support (every "
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


def check_claim_arms(config: dict) -> None:
    """Every arm a claim compares is a defined router that its experiment runs (with the claim's k)."""
    for arm, name in config["claims"]["arms"].items():
        if name not in config["routers"]:
            raise ConfigError(f"claims.arms.{arm}: router {name!r} is not defined under 'routers' "
                              f"(defined: {sorted(config['routers'])})")
    for experiment in EXPERIMENTS.values():
        section = config
        for part in experiment.section.split("."):
            section = section[part]
        runs = [(m["router"], m["k"]) for m in section["methods"]]
        for arm, k in experiment.claim_arms:
            name = arm_router(config, arm)
            if not any(router == name and k in (None, run_k) for router, run_k in runs):
                raise ConfigError(f"{experiment.section}.methods: the claims compare {arm} ({name!r}"
                                  f"{f' with k={k}' if k else ''}), which this experiment does not run; add it, "
                                  f"or name another router in claims.arms.{arm}")


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
