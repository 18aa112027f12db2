"""Where the routers that sample draw their random numbers. By default from torch's global generator, as any
torch code does. The toys instead hand each seed a stream of uniform numbers (`drawing_from`), so that seeds
trained side by side in one batched computation draw exactly what each would draw alone; every draw below
turns the stream's uniforms into the same distribution that its default draws from."""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch

_stream: _Stream | None = None  # the active stream, or None: torch's generator


class _Stream:
    """Uniform numbers in [0, 1) of one seed, [M] (one element of a batch under torch.func.vmap), taken in order."""

    def __init__(self, uniforms: torch.Tensor):
        self.uniforms, self.used = uniforms, 0

    def take(self, shape: torch.Size) -> torch.Tensor:
        count = math.prod(shape)
        if self.used + count > self.uniforms.shape[-1]:
            raise RuntimeError(f"a router drew more than the {self.uniforms.shape[-1]} random numbers its seed's "
                               f"stream holds per step; give the stream more (toy.seeds.SeedStreams)")
        taken = self.uniforms[self.used:self.used + count].reshape(shape)
        self.used += count
        return taken


@contextmanager
def drawing_from(uniforms: torch.Tensor):
    """Within this block every draw below takes its numbers from `uniforms` [M], in order."""
    global _stream
    outer, _stream = _stream, _Stream(uniforms)
    try:
        yield
    finally:
        _stream = outer


def _open_uniform(like: torch.Tensor) -> torch.Tensor:
    """Uniforms strictly inside (0, 1), shaped like `like` (the transforms below are infinite at 0 and 1)."""
    tiny = torch.finfo(torch.float32).eps
    return _stream.take(like.shape).to(like.dtype).clamp(tiny, 1 - tiny)


def uniform_like(t: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """U(low, high) shaped like t."""
    if _stream is None:
        return torch.empty_like(t).uniform_(low, high)
    return low + (high - low) * _stream.take(t.shape).to(t.dtype)


def normal_like(t: torch.Tensor) -> torch.Tensor:
    """N(0, 1) shaped like t."""
    if _stream is None:
        return torch.randn_like(t)
    return torch.special.ndtri(_open_uniform(t))  # the inverse normal CDF of a uniform


def gumbel_like(t: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise shaped like t."""
    if _stream is None:
        return -torch.empty_like(t).exponential_().log()
    return -(-_open_uniform(t).log()).log()


def rand(n: int, device: torch.device) -> torch.Tensor:
    """[n] uniforms in [0, 1)."""
    if _stream is None:
        return torch.rand(n, device=device)
    return _stream.take(torch.Size([n])).to(device)


def sample_without_replacement(probs: torch.Tensor, k: int) -> torch.Tensor:
    """k distinct experts per row of probs [N, E], drawn in order (Plackett-Luce). A stream draws them by the
    Gumbel top-k trick, which gives the same distribution over ordered samples as drawing one at a time."""
    if _stream is None:
        return torch.multinomial(probs.detach(), k, replacement=False)
    return (probs.detach().log() + gumbel_like(probs)).topk(k, dim=-1).indices
