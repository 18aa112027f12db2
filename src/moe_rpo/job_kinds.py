"""Each kind of job the workflow runs, declared once: its rule, where it writes (a paths template), the slice of the
config it runs with (a sections function of the config and the job's wildcards), the `python -m moe_rpo` command
that runs it and whether it wants a GPU. The rules (through workflow/rules/common.smk), the command line, the
registry's job lists and the GPU benchmarks read these declarations."""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from moe_rpo import paths, sections

Slice = Callable[[dict, Mapping[str, str]], dict]


@dataclass(frozen=True)
class JobKind:
    rule: str
    """the Snakemake rule that runs these jobs"""
    files: dict[str, str]
    """where a job writes: a paths template, {"record": ..., "key": ...} (paths.py)"""
    command: str
    """the `python -m moe_rpo` command that runs a job"""
    slice: Slice
    """(config, the job's wildcards) -> the settings the job runs with, and only those: a change elsewhere in the
    config reruns none of its jobs"""
    gpu: bool = False
    """trains on a GPU when there is one: asks for one (a cluster profile sends it to a GPU partition)"""
    data_parallel: bool = False
    """runs as train.processes data-parallel processes under torchrun, asking for as many GPUs"""
    builds: tuple[dict, ...] = ()
    """router specs its jobs build beyond their settings' routers (whose modules are among its code inputs)"""

    def routers(self, settings: dict) -> list[dict]:
        """The specs of every router a job with these settings builds."""
        return [*settings.get("routers", {}).values(), *self.builds]

    def settings(self, config: dict, wildcards: Mapping[str, str]) -> dict:
        return self.slice(config, wildcards)

    def settings_json(self, config: dict, wildcards: Mapping[str, str]) -> str:
        """The settings as the rule passes them to the command (a params value: a change reruns the job)."""
        return json.dumps(self.settings(config, wildcards), sort_keys=True)

    def gpus(self, settings: dict) -> int:
        """How many GPUs a job with these settings asks for."""
        if not self.gpu:
            return 0
        return settings["train"]["processes"] if self.data_parallel else 1

    def launcher(self, settings: dict) -> list[str]:
        """How a job with these settings starts, as shell words: one process, or `train.processes` data-parallel
        ones under torchrun."""
        processes = settings["train"]["processes"] if self.data_parallel else 1
        if processes == 1:
            return ["python", "-m", "moe_rpo"]
        return ["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                "-m", "moe_rpo"]


# the first step of a corpus's preparation: its spec checked, its documents counted (its shard and gather jobs read
# this job's record, not the config)
CORPUS_INVENTORY = JobKind("corpus_inventory", paths.CORPUS_INVENTORY, "corpus-inventory",
                           lambda config, w: sections.corpus_spec(config, w["corpus"]))
TOY_RUN = JobKind("toy_run", paths.TOY_RUN, "toy", lambda config, w: sections.experiment_settings(config, w["experiment"]))
# toy 1 for exactly the router benchmark's (router, k) pairs
TOY_BENCHMARK_RUN = JobKind("toy_benchmark_run", paths.TOY_RUN, "toy",
                            lambda config, w: sections.benchmark_toy_settings(config))
BASE_MODEL = JobKind("base_model", paths.BASE_MODEL, "base-model", lambda config, w: config["base_model"],
                     gpu=True, data_parallel=True)
# a recovery job also builds the oracle's probe model
RECOVERY_RUN = JobKind("recovery_run", paths.RECOVERY_RUN, "recovery",
                       lambda config, w: sections.recovery_run_settings(config, w["setting"], w["method"]),
                       gpu=True, data_parallel=True, builds=(sections.ORACLE_PROBE_ROUTER,))
RECOVERY_LAYERS_RUN = JobKind("recovery_layers_run", paths.RECOVERY_LAYERS_RUN, "recovery",
                              lambda config, w: sections.recovery_layers_settings(config, w["layers"], w["method"]),
                              gpu=True, data_parallel=True, builds=(sections.ORACLE_PROBE_ROUTER,))
# the identifiability sweep: the oracle of every layer, evaluations only, one process
RECOVERY_DESIGN = JobKind("recovery_design", paths.RECOVERY_DESIGN, "recovery-design",
                          lambda config, w: sections.recovery_design_settings(config), gpu=True,
                          builds=(sections.ORACLE_PROBE_ROUTER,))
TRAIN_RUN = JobKind("train_run", paths.TRAIN_RUN, "train",
                    lambda config, w: sections.training_run_settings(config, w["training"], w["method"]),
                    gpu=True, data_parallel=True)
READING_RUN = JobKind("reading_run", paths.READING_RUN, "train",
                      lambda config, w: sections.reading_run_settings(config, w["reading"], w["method"]),
                      gpu=True, data_parallel=True)

JOB_KINDS = {kind.rule: kind for kind in (CORPUS_INVENTORY, TOY_RUN, TOY_BENCHMARK_RUN, BASE_MODEL, RECOVERY_RUN, RECOVERY_LAYERS_RUN,
                                          RECOVERY_DESIGN, TRAIN_RUN, READING_RUN)}
