"""E GPT-2 MLPs with their weights stacked, run on rows sorted by expert: on a GPU one grouped matrix multiply
per weight matrix (torch.nn.functional.grouped_mm, where a check finds it correct), otherwise one expert's
MLP after another."""
from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional as F


class Experts(nn.Module):
    """expert_e(x) = c_proj[e] gelu(c_fc[e] x + c_fc_bias[e]) + c_proj_bias[e], for E experts at once.

    c_fc: [E, H, C], c_proj: [E, C, H], biases [E, H] and [E, C]: nn.Linear's (out, in) layout, so that the
    per-expert kernel makes exactly nn.Linear's calls (results bit-identical to separate MLP modules);
    grouped_mm takes the transposed views.
    kernel: "grouped_mm", "loop" (one expert after another), or "auto" (see forward); benchmarks set it."""

    kernel: str = "auto"

    def __init__(self, mlps: list[nn.Module]):
        """Stack the weights of GPT-2 MLPs (modules with c_fc and c_proj Linear layers and a dropout)."""
        super().__init__()
        self.c_fc = nn.Parameter(torch.stack([m.c_fc.weight.detach() for m in mlps]))
        self.c_proj = nn.Parameter(torch.stack([m.c_proj.weight.detach() for m in mlps]))
        bias = mlps[0].c_fc.bias is not None
        self.c_fc_bias = nn.Parameter(torch.stack([m.c_fc.bias.detach() for m in mlps])) if bias else None
        self.c_proj_bias = nn.Parameter(torch.stack([m.c_proj.bias.detach() for m in mlps])) if bias else None
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.dropout = nn.Dropout(mlps[0].dropout.p)

    def __len__(self) -> int:
        return self.c_fc.shape[0]

    def mlp_state(self, expert: int) -> dict[str, torch.Tensor]:
        """Expert `expert`'s weights as a GPT-2 MLP's state_dict (the inverse of the constructor; views)."""
        state = {"c_fc.weight": self.c_fc[expert], "c_proj.weight": self.c_proj[expert]}
        if self.c_fc_bias is not None:
            state |= {"c_fc.bias": self.c_fc_bias[expert], "c_proj.bias": self.c_proj_bias[expert]}
        return state

    def forward(self, x: torch.Tensor, expert_of_row: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """x: [R, C] rows sorted by expert; expert_of_row: [R]; ends: [E] where each expert's rows end."""
        kernel = self.kernel
        if kernel == "auto":
            kernel = auto_kernel(x.device.type, _dtype(x), torch.compiler.is_compiling())
        if kernel == "grouped_mm":
            return self.dropout(self._grouped(x, expert_of_row, ends))
        if kernel == "loop":
            return self.dropout(self._per_expert(x, ends))
        raise ValueError(f"unknown experts kernel {kernel!r}: choose auto, grouped_mm or loop")

    def _grouped(self, x: torch.Tensor, expert_of_row: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Two grouped_mm calls over all rows: no host sync (grouped_mm's bias takes no gradient: added here)."""
        one_hot = None if self.c_fc_bias is None else F.one_hot(expert_of_row, len(self)).to(_dtype(x))
        h = grouped_mm(x, self.c_fc.transpose(1, 2), ends)
        if one_hot is not None:
            h = h + bias_of_rows(one_hot, self.c_fc_bias)
        y = grouped_mm(self.gelu(h), self.c_proj.transpose(1, 2), ends)
        return y if one_hot is None else y + bias_of_rows(one_hot, self.c_proj_bias)

    def _per_expert(self, x: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Each expert's whole MLP on its rows, one expert after another (reads ends on the host)."""
        def per_expert(t):  # unbind once: indexing the stacked weight per expert would make E full-size gradients
            return [None] * len(self) if t is None else t.unbind()

        layers = zip(*map(per_expert, (self.c_fc, self.c_fc_bias, self.c_proj, self.c_proj_bias)))
        # split, not slices: a slice's backward writes its rows into a zeroed copy of x, one per expert
        rows = x.split(torch.diff(ends, prepend=ends.new_zeros(1)).tolist())
        parts = [F.linear(self.gelu(F.linear(r, fc, fc_bias)), proj, proj_bias)
                 for (fc, fc_bias, proj, proj_bias), r in zip(layers, rows) if len(r)]
        return torch.cat(parts) if parts else x.new_zeros((0, x.shape[1]))


def bias_of_rows(one_hot: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Each row's expert's bias, [R, E] one-hot times [E, H]: its gradient is one matmul. Indexing (bias[expert])
    would be as exact, but its backward accumulates R rows into E under deterministic kernels, which CUDA does
    one duplicate index after another (benchmarks/gpu_check.py measured it on an H200)."""
    return one_hot @ bias.to(one_hot.dtype)


def _dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype x's matmuls compute in (autocast's, where it is on)."""
    return torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype


def grouped_mm(x: torch.Tensor, w: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """[R, n] rows sorted by group times w [G, n, m] -> [R, m]: rows ends[g-1]:ends[g] times w[g], in one
    torch.nn.functional.grouped_mm call (no host sync), in the autocast dtype where autocast is on."""
    dtype = _dtype(x)
    with torch.autocast(x.device.type, enabled=False):  # grouped_mm has no autocast rule: cast by hand
        y = F.grouped_mm(x.to(dtype).contiguous(), w.to(dtype), offs=ends.to(torch.int32))
    return _ContiguousGrad.apply(y)


class _ContiguousGrad(torch.autograd.Function):
    """The identity, whose backward hands on a contiguous gradient: grouped_mm's backward on the CPU raises a
    stride error on a broadcast one (torch 2.13, e.g. the gradient of y.sum())."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


# where grouped_mm is chosen: on the CPU it is itself a loop of matmuls, and the loop kernel's per-expert MLP keeps
# an expert's rows in cache (benchmarks/moe_layer.py: 1.07-1.50x dense against 1.23-1.53x)
GROUPED_MM_DEVICES = ("cuda",)


@torch.compiler.assume_constant_result  # torch.compile takes the choice as a constant, instead of tracing the check
def auto_kernel(device_type: str, dtype: torch.dtype, compiling: bool) -> str:
    """The kernel "auto" runs: grouped_mm on a GPU where the check passes, the loop elsewhere. Under
    torch.compile grouped_mm only in bfloat16: its meta kernel (what compile traces) takes no other dtype."""
    if device_type not in GROUPED_MM_DEVICES or (compiling and dtype != torch.bfloat16):
        return "loop"
    return "grouped_mm" if grouped_mm_supported(device_type, dtype) else "loop"


@functools.cache
def grouped_mm_supported(device_type: str, dtype: torch.dtype) -> bool:
    """Whether grouped_mm runs here and matches one matmul per group, forward and backward, on a small problem
    with an empty group and a broadcast incoming gradient (checked once per device type and dtype: it takes
    no float64, and on CUDA its kernels need a recent GPU)."""
    if not hasattr(F, "grouped_mm"):
        return False
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(10, 8, generator=generator).to(device_type, dtype)
    w = torch.randn(3, 8, 16, generator=generator).to(device_type, dtype)
    ends = torch.tensor([4, 4, 10], device=device_type)
    results = []
    for grouped in (True, False):
        xk, wk = x.clone().requires_grad_(), w.clone().requires_grad_()
        try:
            y = grouped_mm(xk, wk, ends) if grouped else torch.cat([xk[:4] @ wk[0], xk[4:] @ wk[2]])
            y.sum().backward()  # a broadcast gradient
        except (RuntimeError, NotImplementedError):
            return False
        results.append((y, xk.grad, wk.grad))
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    return all(torch.allclose(a.float(), b.float(), rtol=tolerance, atol=tolerance) for a, b in zip(*results))
