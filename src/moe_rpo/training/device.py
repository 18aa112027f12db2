"""Where and how a training job computes: its CPU threads, deterministic kernels, and the device it runs on."""
from __future__ import annotations

import os

import torch


def configure_torch(threads: int, job_threads: int = 1) -> None:
    """CPU threads (the settings' `threads`, or when that is 0 the job's), and deterministic kernels only, on a GPU
    as on the CPU: an op without a deterministic kernel raises. On an H200 (torch 2.11) every router's training step runs so and two runs repeat bit for
    bit (benchmarks/gpu_check.py checks both); attention then avoids cuDNN's non-deterministic backward."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed for deterministic cuBLAS
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads or job_threads)


def pick_device(name: str) -> torch.device:
    """'auto': the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no GPU is available (use device: auto or cpu)")
    return torch.device(name)
