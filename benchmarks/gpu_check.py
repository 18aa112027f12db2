"""One short check of the MoE training core on a GPU (runs on the CPU too, which its test does):

1. whether grouped_mm is used there (grouped_mm_supported, per dtype);
2. the two expert kernels against each other, forward and backward, in float32 and under bf16 autocast;
3. determinism: a small MoE GPT trained twice with the pipeline's settings (configure_torch: deterministic
   kernels, warn-only on a GPU) and bf16 autocast on a GPU: are the weights bit-equal, and which ops warned
   that they have no deterministic kernel;
4. speed: ms per training step of the Shakespeare MoE at the paper config's size, per kernel, beside a dense
   GPT with the same active parameters.

    python benchmarks/gpu_check.py              # on the GPU when there is one
    python benchmarks/gpu_check.py --small      # a tiny size (the test's)
"""
from __future__ import annotations

import argparse
import warnings
import torch

from moe_layer import iso_active_dense, median_seconds, training_step
from moe_rpo.models import GPT, GPTConfig, MoE
from moe_rpo.models.experts import grouped_mm_supported
from moe_rpo.training.lm import configure_torch


def moe_gpt(args, k: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                       n_head=args.n_head, n_embd=args.n_embd, num_experts=4, k=k,
                       moe_layers=tuple(range(args.n_layer)), router={"method": "softmax_topk"})
    return GPT(config)


def set_kernel(model: GPT, kernel: str) -> GPT:
    for module in model.modules():
        if isinstance(module, MoE):
            module.experts.kernel = kernel
    return model


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def check_kernels(args, device: torch.device) -> None:
    print("2. expert kernels, grouped_mm against the per-expert loop (max |difference|)")
    if not grouped_mm_supported(device.type, torch.float32) and not grouped_mm_supported(device.type, torch.bfloat16):
        print("   grouped_mm is not supported here: only the loop runs")
        return
    idx = torch.randint(0, args.vocab_size, (args.batch, args.block_size), device=device)
    for bf16 in (False, True) if device.type == "cuda" else (False,):  # autocast: GPU only, as in training
        results = {}
        for kernel in ("grouped_mm", "loop"):
            model = set_kernel(moe_gpt(args, k=2), kernel).to(device)
            with autocast(device) if bf16 else torch.autocast(device.type, enabled=False):
                out = model(idx, targets=idx)
            out.loss.backward()
            results[kernel] = [out.logits.float()] + [p.grad.float() for p in model.parameters()]
        worst = max((a - b).abs().max().item() for a, b in zip(*results.values()))
        print(f"   {'bf16 autocast' if bf16 else 'float32':13}  logits and gradients: {worst:.2e}")


def train_once(args, device: torch.device) -> tuple[list[torch.Tensor], set[str]]:
    model = moe_gpt(args, k=2, seed=1).to(device)
    idx = torch.randint(0, args.vocab_size, (args.batch, args.block_size), device=device,
                        generator=torch.Generator(device).manual_seed(2))
    step = training_step(model, idx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(args.steps):
            with autocast(device):
                step()
    nondeterministic = {str(w.message).splitlines()[0][:120] for w in caught if "determinis" in str(w.message)}
    return [p.detach().cpu() for p in model.parameters()], nondeterministic


def check_determinism(args, device: torch.device) -> None:
    configure_torch(torch.get_num_threads())
    (a, warned), (b, _) = train_once(args, device), train_once(args, device)
    equal = all(torch.equal(x, y) for x, y in zip(a, b))
    print(f"3. determinism: {args.steps} training steps twice, weights bit-equal: {equal}")
    for message in sorted(warned) or ["(none)"]:
        print(f"   op without a deterministic kernel: {message}")


def check_speed(args, device: torch.device) -> None:
    print(f"4. training step, {args.n_layer} layers x {args.n_embd}, batch {args.batch} x {args.block_size}, "
          f"every block an MoE of 4 experts (ms per step, median of {args.repeats})")
    idx = torch.randint(0, args.vocab_size, (args.batch, args.block_size), device=device)
    kernels = ["loop"] + (["grouped_mm"] if grouped_mm_supported(device.type, torch.bfloat16 if device.type == "cuda"
                                                                  else torch.float32) else [])
    for k in (1, 2):
        steps = {kernel: training_step(set_kernel(moe_gpt(args, k), kernel).to(device), idx) for kernel in kernels}
        steps["iso-active dense"] = training_step(iso_active_dense(moe_gpt(args, k).config).to(device), idx)

        def under_autocast(fn):
            def run():
                with autocast(device):
                    fn()
            return run
        seconds = median_seconds({name: under_autocast(fn) for name, fn in steps.items()}, 3, args.repeats, device)
        print(f"   k={k}: " + ", ".join(f"{name} {s * 1e3:.1f}" for name, s in seconds.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="a tiny model and batch (for the test)")
    parser.add_argument("--steps", type=int, default=20, help="training steps of the determinism check")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    size = (dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch=4, vocab_size=65) if args.small else
            dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch=64, vocab_size=65))  # config/paper.yaml's
    vars(args).update(size)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}")
    print("1. grouped_mm correct here (the layer uses it on CUDA only): " + ", ".join(
        f"{dtype}: {grouped_mm_supported(device.type, dtype)}" for dtype in (torch.float32, torch.bfloat16)))
    check_kernels(args, device)
    check_determinism(args, device)
    check_speed(args, device)


if __name__ == "__main__":
    main()
