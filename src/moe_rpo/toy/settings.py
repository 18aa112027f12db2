"""A toy job's settings (job_kinds.TOY_RUN's slice of the config: the toy's section, its seeds and routers), typed once
per job: the fields every toy has, and each toy's own. The toy code reads fields, never the dict."""
from __future__ import annotations

from dataclasses import dataclass, fields

from moe_rpo.values import Arm


@dataclass(frozen=True)
class ToySettings:
    seeds: list[int]
    """the seeds it trains side by side, one router (and, in toy 2, experts) per seed"""
    shown_seed: int
    """the seed whose full series the figures show"""
    methods: list[Arm]
    """the (router, k) pairs it trains"""
    routers: dict[str, dict]
    """the spec of each router its methods name"""
    steps: int
    """optimizer steps"""
    lr: float
    """the optimizer's learning rate"""
    batch_size: int
    """samples per step"""

    @classmethod
    def of(cls, settings: dict):
        """The typed settings of a toy job (keys beyond the class's fields are refused)."""
        unknown = set(settings) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}")
        return cls(**{**settings, "methods": [Arm.of(m) for m in settings["methods"]]})


@dataclass(frozen=True)
class FixedExpertsSettings(ToySettings):
    """Toys 1 (routing) and 3 (the weighting dilemma): fixed 2-D experts and a target the MoE output should reach."""
    experts: list[list[float]]
    """the experts' output vectors"""
    target: list[float]
    """the point the MoE output should reach"""


@dataclass(frozen=True)
class CollapseSettings(ToySettings):
    """Toy 2 (expert collapse): one input cluster per expert, each with its own linear regression target."""
    cluster_centers: list[list[float]]
    """the input clusters' centres"""
    expert_optima: list[list[float]]
    """each cluster's regression weights, where expert n starts"""
    cluster_std: float
    """the inputs' spread around their centre"""
    noise_std: float
    """the regression targets' noise"""
    weight_decays: list[float]
    """the router weight decays each method trains with, one variant each"""
    eval_size: int
    """samples of each seed's fixed evaluation set"""
    log_every: int
    """steps between logged expert positions and metrics"""


@dataclass(frozen=True)
class BarrierSettings(ToySettings):
    """Toy 4 (the monotonicity barrier): two fixed experts behind a frozen non-linear readout."""
    experts: list[list[float]]
    """experts A and B"""
    frequency: float
    """the readout F(z) = sin(frequency * z)"""
    initial_prob_b: float
    """the router's starting probability of expert B"""
