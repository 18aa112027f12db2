"""What a language-model run trains on: random windows of a token file from a seeded generator (its state is the
data position a checkpoint holds), and the token counts that frequency-balanced routers are fitted to."""
from __future__ import annotations

import numpy as np
import torch

from moe_rpo.models import GPT


class Batches:
    """Random windows [batch, block] of a token array and their next-token targets, from a seeded generator
    whose state is part of a checkpoint (the data position). With `share` = (rank, processes), every rank
    draws the same global batch of `batch_size` windows and returns its contiguous share of the rows,
    rank * batch_size / processes up to (rank + 1) * batch_size / processes."""

    def __init__(self, tokens: np.ndarray, batch_size: int, block_size: int, seed: int,
                 share: tuple[int, int] = (0, 1)):
        check_window_fits(tokens, block_size)
        rank, processes = share
        if batch_size % processes:
            raise ValueError(f"batch_size={batch_size} (the global batch) is not divisible by the {processes} "
                             f"data-parallel processes; use a multiple of {processes}")
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        local = batch_size // processes
        self.rows = slice(rank * local, (rank + 1) * local)
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.tokens) - self.block_size - 1, (self.batch_size,), generator=self.generator)
        return windows(self.tokens, starts[self.rows].tolist(), self.block_size)


def check_window_fits(tokens: np.ndarray, block_size: int) -> None:
    """Refuse a token array shorter than one window and its next-token target, naming its file."""
    if len(tokens) <= block_size + 1:
        name = getattr(tokens, "filename", None) or "the token array"  # a memmap knows its file
        raise ValueError(f"{name} holds {len(tokens)} tokens, too few for one window of block_size={block_size} "
                         f"plus its target; use a larger split (val_fraction) or a smaller train.block_size")


def windows(tokens: np.ndarray, starts: list[int], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.stack([np.asarray(tokens[s:s + block_size + 1], dtype=np.int64) for s in starts])
    return torch.from_numpy(np.ascontiguousarray(rows[:, :-1])), torch.from_numpy(np.ascontiguousarray(rows[:, 1:]))


def to_device(batch: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """The batch on the device. To a GPU from pinned memory and without waiting: a plain copy would wait for
    the kernels already queued, a host sync every step."""
    if device.type != "cuda":
        return batch
    return tuple(t.pin_memory().to(device, non_blocking=True) for t in batch)


def token_counts(tokens: np.ndarray, vocab_size: int) -> torch.Tensor:
    """How often each token id occurs in `tokens` [vocab_size] (read in chunks: corpora are memory maps)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(tokens), 1 << 24):
        counts += np.bincount(np.asarray(tokens[start:start + (1 << 24)]), minlength=vocab_size)
    return torch.from_numpy(counts)


def fit_routers_to_corpus(model: GPT, train_tokens: np.ndarray) -> None:
    """Give the routers that balance by token frequency (balanced hashing) the training split's token
    counts; the corpus is counted only when one of them needs it."""
    routers = [router for router in model.routers() if router.uses_token_counts]
    if routers:
        counts = token_counts(train_tokens, model.config.vocab_size)
        for router in routers:
            router.fit_token_counts(counts)
