"""Speed of the MoE layer and of MoE GPT training against dense equivalents of equal *active* compute,
measured side by side (interleaved repeats, median time) in one process.

(i)   MoE layer forward+backward vs a dense MLP of hidden width k * 4 * n_embd (the FLOPs of k experts), for
      E in --experts and k in --ks, with each grouped-matmul kernel (grouped_mm, loop) and with the layer this
      project had before (one nn.Linear pair per expert, a Python loop, index_add_): the ratios are the cost
      of routing and dispatch, and new / old is what the stacked, sorted dispatch changed.
(ii)  GPT training tokens/s (forward, backward, AdamW), for each k, of a GPT whose every block is an MoE layer vs the dense
      GPT with the same active parameters (each MLP k * 4 * n_embd wide); and the optimizer step's share of it.

    python benchmarks/moe_layer.py --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from moe_rpo.models import GPT, GPTConfig, MoE
from moe_rpo.models.experts import grouped_mm_supported
from moe_rpo.models.gpt import MLP
from moe_rpo.routers import Router, build_router


class LoopMoE(nn.Module):
    """The MoE layer as it was before stacked experts: separate MLP modules, one Python iteration per expert
    (a host sync for the row counts) and index_add_ to combine (CUDA atomics when k > 1)."""

    def __init__(self, experts: list[nn.Module], router: Router):
        super().__init__()
        self.experts, self.router = nn.ModuleList(experts), router

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, object]:
        B, T, C = x.size()
        tokens = x.reshape(B * T, C)
        routing = self.router(tokens)
        slots = routing.active().reshape(-1).nonzero().squeeze(1)
        expert_of_row = routing.experts.reshape(-1)[slots]
        order = expert_of_row.argsort(stable=True)
        token_of_row = slots[order].div(routing.experts.shape[1], rounding_mode="floor")
        weight_of_row = routing.weights.reshape(-1)[slots[order], None]
        y, start = torch.zeros_like(tokens), 0
        for expert, count in zip(self.experts, torch.bincount(expert_of_row[order], minlength=len(self.experts)).tolist()):
            if count:
                rows = token_of_row[start:start + count]
                y.index_add_(0, rows, weight_of_row[start:start + count] * expert(tokens.index_select(0, rows)))
            start += count
        return y.view(B, T, C), routing


class WideMLP(nn.Module):
    """A GPT-2 MLP of a given hidden width (the dense model with a k-expert MoE's active parameters)."""

    def __init__(self, n_embd: int, hidden: int):
        super().__init__()
        self.c_fc, self.gelu, self.c_proj = nn.Linear(n_embd, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


def iso_active_dense(config: GPTConfig) -> GPT:
    """The dense GPT with the active parameters of `config`'s MoE GPT: every MLP k * 4 * n_embd wide."""
    model = GPT(replace(config, moe_layers=()))
    for block in model.transformer.h:
        block.mlp = WideMLP(config.n_embd, config.k * 4 * config.n_embd)
    return model


def median_seconds(fns: dict[str, Callable[[], None]], warmup: int, repeats: int,
                   device: torch.device) -> dict[str, float]:
    """Median wall time of each function, its repeats interleaved with the others'."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def forward_backward(layer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step():
        layer.zero_grad(set_to_none=True)
        out = layer(x)
        (out[0] if isinstance(out, tuple) else out).square().mean().backward()
    return step


def kernels(device: torch.device) -> list[str]:
    return ["grouped_mm", "loop"] if grouped_mm_supported(device.type, torch.float32) else ["loop"]


def bench_layers(args, device: torch.device) -> None:
    print(f"(i) MoE layer forward+backward, {args.batch * args.block_size} tokens, n_embd {args.n_embd}, "
          f"router {args.router}: time / dense MLP of width k x 4C (equal active FLOPs)")
    names = [f"new {kernel}" for kernel in kernels(device)] + ["old loop"]
    print(f"  {'E':>3} {'k':>2} {'dense ms':>9} " + " ".join(f"{name:>15}" for name in names) + f" {'new/old':>8}")
    x = torch.randn(args.batch, args.block_size, args.n_embd, device=device)
    for num_experts in args.experts:
        for k in args.ks:
            torch.manual_seed(0)
            experts = [MLP(GPTConfig(n_embd=args.n_embd)) for _ in range(num_experts)]
            router = build_router({"method": args.router}, args.n_embd, num_experts, k)
            layers = {"dense": WideMLP(args.n_embd, k * 4 * args.n_embd)}
            for kernel in kernels(device):
                layers[f"new {kernel}"] = MoE(experts, router)
                layers[f"new {kernel}"].experts.kernel = kernel
            layers["old loop"] = LoopMoE(experts, router)
            seconds = median_seconds({name: forward_backward(layer.to(device), x) for name, layer in layers.items()},
                                     args.warmup, args.repeats, device)
            best_new = min(seconds[name] for name in names[:-1])
            print(f"  {num_experts:>3} {k:>2} {seconds['dense'] * 1e3:9.2f} "
                  + " ".join(f"{seconds[name] / seconds['dense']:15.2f}" for name in names)
                  + f" {best_new / seconds['old loop']:8.2f}")


def training_step(model: GPT, idx: torch.Tensor, optimizer_only: bool = False) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        if not optimizer_only:
            out = model(idx, targets=idx)
            loss = out.loss
            for router, routing in zip(model.routers(), out.routing):
                loss = loss + sum(router.loss_terms(routing, out.token_loss).values(),
                                  torch.zeros((), device=idx.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
    return step


def bench_gpt(args, device: torch.device) -> None:
    num_experts = args.experts[0]
    print(f"(ii) GPT training (forward, backward, AdamW): {args.n_layer} layers, n_embd {args.n_embd}, "
          f"batch {args.gpt_batch} x {args.block_size}; every block an MoE layer of {num_experts} experts, top-k, "
          f"vs a dense GPT whose MLPs are k x 4C wide (the same active parameters)")
    idx = torch.randint(0, args.vocab_size, (args.gpt_batch, args.block_size), device=device)
    for k in args.ks:
        moe_config = GPTConfig(vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                               n_head=args.n_head, n_embd=args.n_embd, num_experts=num_experts, k=k,
                               router={"method": args.router}, moe_layers=tuple(range(args.n_layer)))
        torch.manual_seed(0)
        models = {"moe": GPT(moe_config).to(device), "dense": iso_active_dense(moe_config).to(device)}
        fns = {name: training_step(model, idx) for name, model in models.items()}
        for name, model in models.items():
            fns[f"{name} optimizer"] = training_step(model, idx, optimizer_only=True)  # after one step: grads exist
        seconds = median_seconds(fns, args.warmup, args.repeats, device)
        for name, model in models.items():
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"  k={k} {name:5} GPT {params:6.2f}M params {idx.numel() / seconds[name]:10.0f} tokens/s, "
                  f"optimizer step {seconds[f'{name} optimizer'] / seconds[name]:5.1%} of a training step")
        print(f"  k={k} ratio MoE / iso-active dense tokens/s {seconds['dense'] / seconds['moe']:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8, help="sequences per layer call of (i)")
    parser.add_argument("--gpt-batch", type=int, default=32, help="sequences per training step of (ii) (the base model's)")
    parser.add_argument("--experts", type=int, nargs="+", default=[4, 8, 16], help="E values of (i); (ii) uses the first")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2], help="k values of (i) and (ii)")
    parser.add_argument("--router", default="softmax_topk", help="router method (default options)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"median of {args.repeats} repeats after {args.warmup} warm-up")
    bench_layers(args, device)
    bench_gpt(args, device)


if __name__ == "__main__":
    main()
