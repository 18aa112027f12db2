"""A training job's settings, typed: the `train` section of a validated config (schema: definitions/lm_train), made
once per job (`TrainSettings.of`); the training code reads its fields, never the dict. The defaults and ranges live
in the schema, which has checked every value before a job starts."""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields

import torch

from moe_rpo.training.device import pick_device


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    """optimizer steps of the run"""
    batch_size: int
    """windows per optimizer step: the global batch, split over the data-parallel processes"""
    block_size: int
    """tokens per training window (at most the model's block_size)"""
    lr: float
    """peak learning rate of AdamW"""
    warmup_steps: int
    """linear warm-up steps before the cosine decay"""
    min_lr_ratio: float
    """the cosine decay ends at lr * min_lr_ratio"""
    weight_decay: float
    """AdamW's weight decay, on matrices only"""
    betas: tuple[float, float]
    """AdamW's betas"""
    grad_clip: float
    """the joint gradient norm is clipped to this"""
    eval_every: int
    """steps between evaluations (and after the last step)"""
    eval_batches: int
    """validation batches per evaluation, on fixed windows"""
    checkpoint_every: int
    """steps between checkpoints, from which a killed run resumes"""
    device: str
    """'auto' (the GPU when there is one), 'cpu' or 'cuda'"""
    bf16: bool
    """bfloat16 autocast on a GPU (ignored on the CPU; routers compute in float32)"""
    compile: bool
    """torch.compile the model"""
    threads: int
    """CPU threads (0: the job's thread count)"""
    processes: int
    """data-parallel processes of the job (one per GPU, under torchrun)"""
    grad_accum: int
    """micro-batches per optimizer step, whose gradients add up as one batch's"""
    alternation: str
    """how routers with an E/M alternation train: 'step' (the phase flips every step) or 'iteration'"""
    reinforce_baseline: str
    """the REINFORCE baseline of sampling routers: 'batch_mean' (leave-one-out) or 'greedy'"""

    @classmethod
    def of(cls, train: dict) -> TrainSettings:
        """The typed settings of a validated `train` section (keys beyond the dataclass's are refused)."""
        unknown = set(train) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}")
        return cls(**{**train, "betas": tuple(train["betas"])})

    @functools.cached_property
    def torch_device(self) -> torch.device:
        """The device the job computes on, resolved once."""
        return pick_device(self.device)

    def as_dict(self) -> dict:
        """The section as the config has it (records and fingerprints hold it so)."""
        return {**asdict(self), "betas": list(self.betas)}
