"""Speed of the MoE layer and of MoE GPT training against dense equivalents, measured side by side
(interleaved repeats, median time) in one process.

(i)  MoE layer forward+backward vs a dense MLP with k times GPT-2's hidden width (k * 4 * n_embd):
     the same active FLOPs as k experts, so the ratio is the cost of routing and sparse dispatch.
(ii) GPT training tokens/s (forward, backward, AdamW step) of a GPT whose every block is an MoE layer
     vs the dense GPT of the same n_layer and n_embd (the MoE's MLP compute per token is k times larger).

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
from moe_rpo.models.gpt import MLP
from moe_rpo.routers import build_router


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
        (out[0] if isinstance(out, tuple) else out).sum().backward()
    return step


def training_step(model: GPT, idx: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        out = model(idx, targets=idx)
        loss = out.loss
        for router, routing in zip(model.routers(), out.routing):
            loss = loss + sum(router.loss_terms(routing, out.token_loss).values(), torch.zeros((), device=idx.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def bench_layer(args, router: dict, device: torch.device) -> None:
    experts = [MLP(GPTConfig(n_embd=args.n_embd)) for _ in range(args.experts)]
    moe = MoE(experts, build_router(router, args.n_embd, args.experts, args.k)).to(device)
    hidden = args.k * 4 * args.n_embd
    dense = nn.Sequential(nn.Linear(args.n_embd, hidden), nn.GELU(approximate="tanh"),
                          nn.Linear(hidden, args.n_embd)).to(device)
    x = torch.randn(args.batch, args.block_size, args.n_embd, device=device)
    seconds = median_seconds({"moe": forward_backward(moe, x), "dense": forward_backward(dense, x)},
                             args.warmup, args.repeats, device)
    print(f"(i) MoE layer forward+backward: {x.shape[0] * x.shape[1]} tokens, n_embd {args.n_embd}, "
          f"{args.experts} experts, top-{args.k}, router {router['method']}")
    print(f"  MoE layer                          {seconds['moe'] * 1e3:8.2f} ms")
    print(f"  dense MLP, hidden {hidden:5d} (k x 4C)   {seconds['dense'] * 1e3:8.2f} ms")
    print(f"  ratio MoE / dense                  {seconds['moe'] / seconds['dense']:8.2f}")


def bench_gpt(args, router: dict, device: torch.device) -> None:
    dense_config = GPTConfig(vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                             n_head=args.n_head, n_embd=args.n_embd, num_experts=args.experts, k=args.k, router=router)
    moe_config = replace(dense_config, moe_layers=tuple(range(args.n_layer)))
    models = {"moe": GPT(moe_config).to(device), "dense": GPT(dense_config).to(device)}
    idx = torch.randint(0, args.vocab_size, (args.batch, args.block_size), device=device)
    seconds = median_seconds({name: training_step(model, idx) for name, model in models.items()},
                             args.warmup, args.repeats, device)
    tokens_per_s = {name: idx.numel() / s for name, s in seconds.items()}
    params = {name: sum(p.numel() for p in model.parameters()) / 1e6 for name, model in models.items()}
    print(f"(ii) GPT training (forward, backward, AdamW): {args.n_layer} layers, n_embd {args.n_embd}, "
          f"batch {args.batch} x {args.block_size} tokens; MoE in every block")
    print(f"  MoE GPT   {params['moe']:6.2f}M params  {tokens_per_s['moe']:10.0f} tokens/s")
    print(f"  dense GPT {params['dense']:6.2f}M params  {tokens_per_s['dense']:10.0f} tokens/s")
    print(f"  ratio MoE / dense tokens/s         {tokens_per_s['moe'] / tokens_per_s['dense']:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--router", default="softmax_topk", help="router method (default options)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"median of {args.repeats} repeats after {args.warmup} warm-up")
    router = {"method": args.router}
    bench_layer(args, router, device)
    bench_gpt(args, router, device)


if __name__ == "__main__":
    main()
