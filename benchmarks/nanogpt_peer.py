"""This project's GPT against nanoGPT's, side by side on one device, and its MoE against the dense GPT of equal
active parameters: tokens/s and MFU of training steps (forward, loss, backward, gradient clipping, AdamW) in bf16
autocast on a GPU (float32 on a CPU), the median of repeats interleaved across the models of a part.

nanoGPT's model.py is imported from a checkout given by path (nothing of it is copied into this project):

    git clone https://github.com/karpathy/nanoGPT /tmp/nanoGPT
    python benchmarks/nanogpt_peer.py --nanogpt /tmp/nanoGPT/model.py --json peer.json
    python benchmarks/nanogpt_peer.py --nanogpt /tmp/nanoGPT/model.py --small --device cpu     # the test's size

Parts, in this order (a part that would start after --budget-s is skipped and says so):
1. dense, compiled: nanoGPT as its bench.py trains it (its configure_optimizers: fused AdamW on a GPU; kernels
   free to be non-deterministic) beside ours as the pipeline trains it (config/paper.yaml's pretraining: AdamW of
   training/loop.py, gradient clipping, deterministic kernels, the vocabulary padded to 50304 rows and the logits
   cut to 50257), and ours with deterministic kernels off;
2. dense, eager: the same two, and ours with one difference each (deterministic kernels off, vocabulary unpadded,
   AdamW unfused: the CPU's choice, so there the same as ours) and nanoGPT with deterministic kernels on: where
   a gap comes from;
3. the top ops of one profiled eager step of each (GPU time on a GPU);
4. MoE, compiled: every block an MoE layer of 4 experts (softmax top-k), k=1 and k=2, each beside the dense GPT
   with its active parameters (MLPs k x 4C wide), all trained as the pipeline trains;
5. the 10M-parameter Shakespeare MoE of config/paper.yaml (launch-bound on a GPU): eager, compiled, compiled
   with CUDA graphs (mode reduce-overhead), and compiled at 4x the batch (how far the step is from its work).
MFU = tokens/s x (6 N + 12 L C T) / peak, nanoGPT's estimate (N: the matmul parameters a token uses), against
the device's datasheet bf16 peak (benchmarks/gpu_check.py) or, on an unknown device, a measured matmul.
CUBLAS_WORKSPACE_CONFIG is set for the whole process (deterministic cuBLAS needs it before CUDA starts), so
nanoGPT's rows run with it too.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.util
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from gpu_check import (PAPER_SIZES, SMALL_SIZES, Size, autocast, first_line, flops_per_token, kernels, peak_tflops,
                       top_ops)
from moe_layer import iso_active_dense, median_seconds

from moe_rpo import config as cfg
from moe_rpo.models import GPT
from moe_rpo.training.device import configure_torch
from moe_rpo.training.loop import make_optimizer
from moe_rpo.training.settings import TrainSettings

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIG = [ROOT / "config" / name for name in ("config.yaml", "full.yaml", "paper.yaml")]


@dataclass
class Contender:
    """One model's training step; `deterministic`: whether it runs with deterministic kernels only."""
    name: str
    model: torch.nn.Module
    step: Callable[[], None]
    deterministic: bool
    tokens: int  # per step


def load_nanogpt(path: Path):
    """nanoGPT's model module, imported from a checkout's model.py."""
    if not path.is_file():
        raise SystemExit(f"--nanogpt {path}: no such file (give the model.py of a nanoGPT checkout)")
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [name for name in ("GPT", "GPTConfig") if not hasattr(module, name)]
    if missing:
        raise SystemExit(f"--nanogpt {path}: defines no {' or '.join(missing)}: not nanoGPT's model.py")
    return module


def pretraining_settings() -> TrainSettings:
    """The training settings of config/paper.yaml's pretraining (GPT-2 124M on TinyStories)."""
    config = cfg.load(*map(str, PAPER_CONFIG))
    return TrainSettings.of(config["pretraining"]["train"])


def batch(vocab_size: int, rows: int, block_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of random tokens and their next tokens, [rows, block_size] each."""
    tokens = torch.randint(0, vocab_size, (rows, block_size + 1), device=device,
                           generator=torch.Generator(device).manual_seed(0))
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


COMPILE_BACKEND = "inductor"  # --compile-backend: the tests trace with "eager" (no C++ code generation on a CPU)


def compiled(model: torch.nn.Module, mode: str | None) -> torch.nn.Module:
    """`model` compiled in `mode` with torch.compile's backend COMPILE_BACKEND; eager when `mode` is None."""
    return torch.compile(model, mode=mode, backend=COMPILE_BACKEND) if mode else model


def nanogpt_contender(nanogpt, size: Size, device: torch.device, compile_mode: str | None,
                      deterministic: bool = False) -> Contender:
    """nanoGPT's GPT-2 (biases, its padded vocabulary) with its own optimizer set-up, clipped at 1.0 as its train.py."""
    torch.manual_seed(0)
    rows = size.config(k=1).padded_vocab_size  # as our GPT pads it
    with contextlib.redirect_stdout(io.StringIO()):  # its parameter counts and optimizer choice
        model = nanogpt.GPT(nanogpt.GPTConfig(block_size=size.block_size, vocab_size=rows, n_layer=size.n_layer,
                                              n_head=size.n_head, n_embd=size.n_embd, dropout=0.0, bias=True)).to(device)
        optimizer = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), device.type)
    forward = compiled(model, compile_mode)
    x, y = batch(size.vocab_size, size.batch, size.block_size, device)

    def step():
        with autocast(device):
            _, loss = forward(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    name = "nanoGPT" + (", deterministic kernels on" if deterministic else "")
    return Contender(name, model, step, deterministic, x.numel())


def our_contender(name: str, model: GPT, settings: TrainSettings, device: torch.device, compile_mode: str | None,
                  deterministic: bool = True, fused: bool | None = None, scale: int = 1) -> Contender:
    """A GPT of this project trained as train_lm trains it: the routers' loss terms added, clipped, AdamW."""
    model = model.to(device)
    params = dict(model.named_parameters())
    optimizer = make_optimizer(params, settings, fused)
    forward = compiled(model, compile_mode)
    x, y = batch(model.config.vocab_size, settings.batch_size * scale, model.config.block_size, device)

    def step():
        with autocast(device):
            out = forward(x, y)
            total = out.loss + sum((term for router, routing in zip(model.routers(), out.routing)
                                    for term in router.loss_terms(routing, out.token_loss).values()),
                                   torch.zeros((), device=device))
        total.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), settings.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return Contender(name, model, step, deterministic, x.numel())


def measure(part: str, contenders: list[Contender], reference: str | None, device: torch.device, repeats: int,
            peak: dict, compile_mode: str | None) -> list[dict]:
    """Rows of ms/step, tokens/s and MFU; each `ratio` the tokens/s over `reference`'s (or over the row's own
    reference, for a name 'moe k=K' the 'dense iso-active k=K')."""
    def run(contender):
        def call():
            with kernels(contender.deterministic):
                contender.step()
        return call
    seconds = median_seconds({c.name: run(c) for c in contenders}, 3, repeats, device)  # the warm-up compiles
    denominator = peak["datasheet_bf16"] or peak["measured_matmul"]
    rows = []
    for c in contenders:
        flops, active = flops_per_token(c.model)
        tokens_per_s = c.tokens / seconds[c.name]
        rows.append({"part": part, "model": c.name, "compile": compile_mode or "eager",
                     "deterministic_kernels": c.deterministic, "tokens_per_step": c.tokens,
                     "params_m": sum(p.numel() for p in c.model.parameters()) / 1e6, "active_params_m": active / 1e6,
                     "ms_per_step": seconds[c.name] * 1e3, "tokens_per_s": tokens_per_s,
                     "mfu": tokens_per_s * flops / (denominator * 1e12)})
    by_name = {row["model"]: row for row in rows}
    for row in rows:
        base = reference or row["model"].replace("moe", "dense iso-active")
        if base in by_name and base != row["model"]:
            row["over"], row["ratio"] = base, row["tokens_per_s"] / by_name[base]["tokens_per_s"]
    return rows


def dense_gpt(size: Size) -> GPT:
    """This project's dense GPT-2 of a size (GPTConfig: biases, GELU's tanh form, the size's vocabulary padding)."""
    torch.manual_seed(0)
    return GPT(replace(size.config(k=1), moe_layers=()))


def dense_parts(nanogpt, size: Size, settings: TrainSettings, device: torch.device, repeats: int, peak: dict,
                compile_mode: str | None) -> list[dict]:
    """Part 1 (compiled) or 2 (eager): nanoGPT beside ours, and ours with one difference each."""
    def ours(name, size=size, **options):
        return our_contender(name, dense_gpt(size), settings, device, compile_mode, **options)
    contenders = [nanogpt_contender(nanogpt, size, device, compile_mode), ours("ours"),
                  ours("ours, deterministic kernels off", deterministic=False)]
    if compile_mode is None:  # the single differences, cheap without compiling
        contenders += [ours("ours, vocabulary unpadded", replace(size, vocab_multiple=1)),
                       ours("ours, AdamW unfused", fused=False),
                       nanogpt_contender(nanogpt, size, device, None, deterministic=True)]
    return measure("dense", contenders, "nanoGPT", device, repeats, peak, compile_mode)


def profile_part(nanogpt, size: Size, settings: TrainSettings, device: torch.device) -> dict:
    """Part 3: the top ops of an eager training step of nanoGPT and of ours, each as it trains."""
    contenders = [nanogpt_contender(nanogpt, size, device, None),
                  our_contender("ours", dense_gpt(size), settings, device, None)]
    result = {}
    for c in contenders:
        with kernels(c.deterministic):
            c.step()  # the first step creates the optimizer's state
            result[c.name] = top_ops(c.step, device)
    return result


def moe_part(size: Size, settings: TrainSettings, device: torch.device, repeats: int, peak: dict,
             compile_mode: str | None) -> list[dict]:
    """Part 4: the MoE GPTs (k=1, k=2) beside their iso-active dense GPTs."""
    contenders = []
    for k in (1, 2):
        torch.manual_seed(0)
        config = size.config(k)
        contenders += [our_contender(f"moe k={k}", GPT(config), settings, device, compile_mode),
                       our_contender(f"dense iso-active k={k}", iso_active_dense(config), settings, device, compile_mode)]
    return measure("moe", contenders, None, device, repeats, peak, compile_mode)


def small_model_part(size: Size, settings: TrainSettings, device: torch.device, repeats: int,
                     peak: dict) -> list[dict]:
    """Part 5: the Shakespeare MoE (k=1) eager, compiled, with CUDA graphs, and compiled at 4x its batch."""
    settings = replace(settings, batch_size=size.batch)
    rows = []
    for label, mode, scale in (("eager", None, 1), ("compiled", "default", 1),
                               ("compiled, CUDA graphs", "reduce-overhead", 1), ("compiled, 4x batch", "default", 4)):
        torch.manual_seed(0)
        try:
            contender = our_contender(f"{size.name} moe k=1, {label}", GPT(size.config(1)), settings, device, mode,
                                      scale=scale)
            rows += measure("shakespeare", [contender], None, device, repeats, peak, mode)
        except Exception as error:  # one mode failing (CUDA graphs with this model, say) must not lose the rest
            rows.append({"part": "shakespeare", "model": f"{size.name} moe k=1, {label}", "compile": mode or "eager",
                         "error": f"{type(error).__name__}: {first_line(error)}"})
        torch._dynamo.reset()
    return rows


def main() -> None:
    global COMPILE_BACKEND
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", type=Path, required=True, help="model.py of a nanoGPT checkout")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="tiny models and batches (for the test)")
    parser.add_argument("--batch", type=int, help="sequences per step of the GPT-2 124M parts (default: 16; small: 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed training steps per model (median)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled parts (1, 4 and 5's compiled rows)")
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="which parts to run")
    parser.add_argument("--budget-s", type=float, default=300, help="skip the parts that would start after this")
    parser.add_argument("--json", help="write the results here (after each part)")
    parser.add_argument("--compile-backend", default=COMPILE_BACKEND, help="torch.compile's backend (default inductor)")
    args = parser.parse_args()
    COMPILE_BACKEND = args.compile_backend
    nanogpt = load_nanogpt(args.nanogpt)
    start, device = time.perf_counter(), torch.device(args.device)
    configure_torch(torch.get_num_threads())  # CUBLAS_WORKSPACE_CONFIG before CUDA starts; kernels() sets the rest
    shakespeare, gpt2 = SMALL_SIZES if args.small else PAPER_SIZES
    gpt2 = replace(gpt2, batch=args.batch or (2 if args.small else 16))
    settings = replace(pretraining_settings(), batch_size=gpt2.batch)
    result = {"date": dt.date.today().isoformat(), "torch": torch.__version__, "device": str(device),
              "small": args.small, "compile_backend": args.compile_backend,
              "nanogpt_model_sha256": hashlib.sha256(args.nanogpt.read_bytes()).hexdigest(),
              "shape": vars(gpt2), "peak_tflops": peak_tflops(device, args.small), "rows": [], "skipped": []}
    peak = result["peak_tflops"]
    print(f"{peak['name']}, torch {torch.__version__}; GPT-2 124M shapes{' (small)' if args.small else ''}, "
          f"batch {gpt2.batch} x {gpt2.block_size}; median of {args.repeats} steps")
    compiled = None if args.no_compile else "default"
    parts = [("1. dense, compiled", lambda: dense_parts(nanogpt, gpt2, settings, device, args.repeats, peak, compiled),
              compiled is not None),
             ("2. dense, eager", lambda: dense_parts(nanogpt, gpt2, settings, device, args.repeats, peak, None), True),
             ("3. top ops", lambda: profile_part(nanogpt, gpt2, settings, device), True),
             ("4. MoE", lambda: moe_part(gpt2, settings, device, args.repeats, peak, compiled), True),
             ("5. Shakespeare MoE", lambda: small_model_part(shakespeare, settings, device, args.repeats, peak),
              not args.no_compile)]
    for number, (label, run, wanted) in enumerate(parts, 1):
        if not wanted or number not in args.parts:
            continue
        if time.perf_counter() - start > args.budget_s:
            result["skipped"].append(f"{label}: past --budget-s {args.budget_s:.0f}")
            print(f"{label}: skipped, past --budget-s")
            continue
        print(label, flush=True)
        try:
            measured = run()
        except Exception as error:  # a part that fails (memory, compile) must not lose the parts after it
            result["skipped"].append(f"{label}: {type(error).__name__}: {first_line(error)}")
            print(f"   failed: {result['skipped'][-1]}")
            measured = []
        if isinstance(measured, dict):
            result["top_ops"] = measured
            for model, ops in measured.items():
                print(f"   {model}: " + "; ".join(f"{op} {ms:.2f} ms" for op, ms in ops[:6]))
        else:
            result["rows"] += measured
            for row in measured:
                print_row(row)
        result["elapsed_s"] = time.perf_counter() - start
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        torch._dynamo.reset()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def print_row(row: dict) -> None:
    if "error" in row:
        print(f"   {row['model']:46} {row['compile']:16} failed: {row['error']}")
        return
    ratio = f"  x{row['ratio']:.2f} of {row['over']}" if "ratio" in row else ""
    print(f"   {row['model']:46} {row['compile']:16}{row['ms_per_step']:9.1f} ms {row['tokens_per_s']:11.0f} tokens/s"
          f"  MFU {row['mfu']:6.1%}{ratio}", flush=True)


if __name__ == "__main__":
    main()
