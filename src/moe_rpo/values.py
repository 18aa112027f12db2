"""The config's value types and the names they give: a method (router and k), a recovery setting, a set of MoE
layers; and the error a refused config value raises. Imported by everything that names runs, so it imports nothing
of the package."""
from __future__ import annotations

from typing import NamedTuple

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


def layer_set_label(layers) -> str:
    """A set of MoE layers as in file names and tables: 'all', or its indices joined by '_' (e.g. '0_1')."""
    return "all" if layers == "all" else "_".join(map(str, layers))
