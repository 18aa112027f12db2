"""One short check of the MoE training core on a GPU, written to a JSON (it runs on the CPU too, which its
test does, at a tiny size):

1. the device's peak: its datasheet's dense bf16 rate where its name is known, and a measured large matmul;
2. whether grouped_mm is used there (grouped_mm_supported, per dtype), and the two expert kernels against
   each other, forward and backward, in float32 and under bf16 autocast;
3. determinism: a small MoE GPT trained twice with the pipeline's settings (configure_torch: deterministic
   kernels only) and bf16 autocast on a GPU: are the weights bit-equal (or which op has no such kernel);
4. where an MoE step's time goes, GPT-2 124M MoE k=1 side by side: as trained, with the pipeline's
   deterministic kernels off, and with the layer's biases added by indexing (as before the one-hot matmul);
   the top ops of torch.profiler;
5. every router of the default config, one training step with deterministic kernels only: runs, or the error;
   and the host syncs of a training step (operations that make the host wait for the GPU: CUDA's sync debug mode);
6. graph breaks: how many times torch.compile's dynamo splits each speed model's forward and loss (0 on a GPU
   in bf16, where the layer runs grouped_mm; the CPU's loop kernel reads its row counts on the host);
7. speed: tokens/s and MFU of training steps (forward, backward, AdamW) in bf16, eager and under
   torch.compile, for the 10M-parameter Shakespeare MoE of config/paper.yaml and for GPT-2 124M dense, MoE
   k=1 and MoE k=2, each beside the dense GPT with its active parameters (MLPs k x 4C wide).

Each measurement that fails records its error instead of stopping the check; parts that would run past
--budget-s are skipped and say so. MFU = tokens/s x (6 x active matmul parameters + 12 x layers x n_embd x
context) / peak, nanoGPT's estimate with an MoE's inactive experts left out.

    python benchmarks/gpu_check.py --json gpu_check.json          # on the GPU when there is one
    python benchmarks/gpu_check.py --small --device cpu           # a tiny size (the test's)
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from moe_layer import iso_active_dense, median_seconds, training_step

from moe_rpo import config as cfg
from moe_rpo import values
from moe_rpo.models import GPT, GPTConfig, MoE
from moe_rpo.models.experts import Experts, grouped_mm, grouped_mm_supported
from moe_rpo.training.batches import fit_routers_to_corpus
from moe_rpo.training.device import configure_torch

ROOT = Path(__file__).resolve().parents[1]
# Dense bf16 tensor-core TFLOP/s from the vendors' datasheets (SXM parts unless named), matched in order
DATASHEET_BF16_TFLOPS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0),
                         ("L40S", 362.1), ("L4", 121.0))


@dataclass(frozen=True)
class Size:
    name: str
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch: int
    vocab_size: int
    vocab_multiple: int = 1  # the padding of the embedding and output head (GPTConfig.vocab_multiple)

    def config(self, k: int) -> GPTConfig:
        """Every block an MoE layer of 4 experts, top-k (the paper config's Shakespeare and pretraining MoEs)."""
        return GPTConfig(vocab_size=self.vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, num_experts=4, k=k,
                         moe_layers=tuple(range(self.n_layer)), router={"method": "softmax_topk"},
                         vocab_multiple=self.vocab_multiple)


PAPER_SIZES = (Size("shakespeare_moe", 6, 6, 384, 256, 64, 65),  # config/paper.yaml's experiment 4
               # its pretraining (experiment 5), the vocabulary padded to 50304 as config/paper.yaml does (the
               # H200 JSON of benchmarks/measured/ predates the padding: its output matmuls ran unaligned)
               Size("gpt2_124m", 12, 12, 768, 1024, 32, 50257, vocab_multiple=64))
SMALL_SIZES = (Size("shakespeare_moe", 1, 2, 16, 16, 4, 65), Size("gpt2_124m", 2, 2, 32, 32, 2, 512))


def experts_of(model: GPT) -> list[Experts]:
    return [module.experts for module in model.modules() if isinstance(module, MoE)]


def set_kernel(model: GPT, kernel: str) -> GPT:
    for experts in experts_of(model):
        experts.kernel = kernel
    return model


def first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:300]


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def peak_tflops(device: torch.device, small: bool) -> dict:
    """The datasheet's dense bf16 peak (None for an unknown device) and a measured matmul's rate."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    datasheet = next((tflops for key, tflops in DATASHEET_BF16_TFLOPS if key in name), None)
    n, dtype = (512 if small else 8192), (torch.bfloat16 if device.type == "cuda" else torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    seconds = median_seconds({"matmul": lambda: a @ b}, 3, 10, device)["matmul"]
    return {"name": name, "datasheet_bf16": datasheet, "measured_matmul": 2 * n**3 / seconds / 1e12,
            "measured_dtype": str(dtype).removeprefix("torch."), "measured_n": n}


def check_kernels(size: Size, device: torch.device) -> dict:
    """Max |difference| of logits and gradients, grouped_mm against the per-expert loop, per precision."""
    supported = {str(d).removeprefix("torch."): grouped_mm_supported(device.type, d)
                 for d in (torch.float32, torch.bfloat16)}
    result = {"grouped_mm_supported": supported, "max_abs_difference": {}}
    if not any(supported.values()):
        return result
    idx = torch.randint(0, size.vocab_size, (size.batch, size.block_size), device=device)
    for bf16 in (False, True) if device.type == "cuda" else (False,):  # autocast: GPU only, as in training
        grads = {}
        for kernel in ("grouped_mm", "loop"):
            torch.manual_seed(0)
            model = set_kernel(GPT(size.config(k=2)), kernel).to(device)
            with autocast(device) if bf16 else torch.autocast(device.type, enabled=False):
                out = model(idx, targets=idx)
            out.loss.backward()
            grads[kernel] = [out.logits.float()] + [p.grad.float() for p in model.parameters()]
        result["max_abs_difference"]["bf16 autocast" if bf16 else "float32"] = max(
            (a - b).abs().max().item() for a, b in zip(*grads.values()))
    return result


def train_once(size: Size, device: torch.device, steps: int) -> list[torch.Tensor]:
    torch.manual_seed(1)
    model = GPT(size.config(k=2)).to(device)
    idx = torch.randint(0, size.vocab_size, (size.batch, size.block_size), device=device,
                        generator=torch.Generator(device).manual_seed(2))
    step = under_autocast(training_step(model, idx), device)
    for _ in range(steps):
        step()
    return [p.detach().cpu() for p in model.parameters()]


def check_determinism(size: Size, device: torch.device, steps: int) -> dict:
    """Two identical training runs with the pipeline's setting (configure_torch: deterministic kernels only):
    bit-equal weights, or the error of the op that has no deterministic kernel."""
    configure_torch(torch.get_num_threads())
    try:
        a, b = train_once(size, device, steps), train_once(size, device, steps)
    except RuntimeError as error:
        return {"steps": steps, "bit_equal": None, "error": first_line(error)}
    return {"steps": steps, "bit_equal": all(torch.equal(x, y) for x, y in zip(a, b)), "error": None}


class IndexedBiasExperts(Experts):
    """The grouped kernel as it was: each row's bias gathered by indexing (bias[expert_of_row])."""

    def _grouped(self, x, expert_of_row, ends):
        h = grouped_mm(x, self.c_fc.transpose(1, 2), ends) + self.c_fc_bias[expert_of_row]
        return grouped_mm(self.gelu(h), self.c_proj.transpose(1, 2), ends) + self.c_proj_bias[expert_of_row]


@contextlib.contextmanager
def kernels(deterministic: bool):
    """Deterministic kernels only, or not, for the steps inside; the setting before is restored after."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def without_deterministic_kernels(step):
    def run():
        with kernels(False):
            step()
    return run


def check_time_split(size: Size, device: torch.device, repeats: int) -> dict:
    """ms per step of one MoE GPT as trained, without deterministic kernels and with indexed biases, beside
    its iso-active dense GPT; and the top ops of a profiled step."""
    idx = torch.randint(0, size.vocab_size, (size.batch, size.block_size), device=device)
    torch.manual_seed(0)
    moe, indexed = GPT(size.config(1)).to(device), GPT(size.config(1)).to(device)
    for experts in experts_of(indexed):
        experts.__class__ = IndexedBiasExperts
    dense = iso_active_dense(size.config(1)).to(device)
    moe_step = training_step(moe, idx)
    steps = {"moe k=1": moe_step, "moe k=1, deterministic kernels off": without_deterministic_kernels(moe_step),
             "moe k=1, biases by indexing": training_step(indexed, idx), "dense iso-active k=1": training_step(dense, idx)}
    seconds = median_seconds({name: under_autocast(step, device) for name, step in steps.items()}, 3, repeats, device)
    return {"size": size.name, "ms_per_step": {name: s * 1e3 for name, s in seconds.items()},
            "top_ops_ms_per_step": top_ops(under_autocast(steps["moe k=1"], device), device)}


def top_ops(step, device: torch.device, steps: int = 3, count: int = 12) -> list[tuple[str, float]]:
    """The ops that take the most time (on the GPU, else the CPU) in `steps` calls of `step`: (name, ms per call)."""
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA]
                                                          if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(profiler.key_averages(), key=lambda e: getattr(e, key), reverse=True)[:count]
    return [(e.key, getattr(e, key) / 1e3 / steps) for e in events]


def check_routers_strict(size: Size, device: torch.device) -> tuple[dict[str, str | None], dict[str, int | None]]:
    """Each router of the default config: one training step (forward, its loss terms, backward, AdamW) with
    deterministic kernels only; None where it runs, else the error's first line (naming the op). And how many
    times a second step makes the host wait for the GPU (None on a CPU, or where the step failed)."""
    routers = cfg.load(str(ROOT / "config/config.yaml"))["routers"]
    idx = torch.randint(0, size.vocab_size, (size.batch, size.block_size), device=device)
    configure_torch(torch.get_num_threads())
    errors, syncs = {}, {}
    for name, spec in routers.items():
        if spec["method"] == values.DENSE:
            continue
        model = GPT(replace(size.config(k=1), router=spec))
        fit_routers_to_corpus(model, idx.flatten().cpu().numpy())
        step = under_autocast(training_step(model.to(device), idx), device)
        try:
            step()  # the first step also creates the optimizer's state
            errors[name], syncs[name] = None, host_syncs(step, device)
        except RuntimeError as error:
            errors[name], syncs[name] = first_line(error), None
    return errors, syncs


def host_syncs(step, device: torch.device) -> int | None:
    """How many operations of one call of `step` make the host wait for the GPU (CUDA's sync debug mode warns
    at each); None on a CPU."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def graph_breaks(sizes: tuple[Size, ...], device: torch.device) -> dict[str, dict[str, int]]:
    """Per size and speed model, dynamo's graph breaks in the forward and loss under the step's autocast."""
    breaks = {}
    for size in sizes:
        idx = torch.randint(0, size.vocab_size, (size.batch, size.block_size), device=device)
        breaks[size.name] = {}
        for name, model in speed_models(size).items():
            torch._dynamo.reset()
            with autocast(device):
                explained = torch._dynamo.explain(model.to(device))(idx, targets=idx)
            breaks[size.name][name] = explained.graph_break_count
    torch._dynamo.reset()
    return breaks


def under_autocast(step, device: torch.device):
    def run():
        with autocast(device):
            step()
    return run


def flops_per_token(model: GPT) -> tuple[float, float]:
    """nanoGPT's 6N + 12 L C T, and N: the matmul parameters a token uses (no position embedding, k of E experts)."""
    c = model.config
    active = sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()
    for experts in experts_of(model):
        active -= sum(p.numel() for p in experts.parameters()) * (len(experts) - c.k) / len(experts)
    return 6 * active + 12 * c.n_layer * c.n_embd * c.block_size, active


def speed_models(size: Size) -> dict[str, GPT]:
    """The MoE GPTs of a size beside the dense GPTs with their active parameters (for k=1: the plain GPT)."""
    models = {}
    for k in ((1,) if size.name == "shakespeare_moe" else (1, 2)):
        torch.manual_seed(0)
        models[f"moe k={k}"] = GPT(size.config(k))
        models[f"dense iso-active k={k}"] = iso_active_dense(size.config(k))
    return models


def check_speed(size: Size, device: torch.device, compiled: bool, repeats: int, peak: dict) -> list[dict]:
    idx = torch.randint(0, size.vocab_size, (size.batch, size.block_size), device=device)
    models = {name: model.to(device) for name, model in speed_models(size).items()}
    steps = {name: under_autocast(training_step(torch.compile(model) if compiled else model, idx), device)
             for name, model in models.items()}
    seconds = median_seconds(steps, 3, repeats, device)  # the warm-up steps compile
    denominator = peak["datasheet_bf16"] or peak["measured_matmul"]
    rows = []
    for name, model in models.items():
        flops, active = flops_per_token(model)
        tokens_per_s = idx.numel() / seconds[name]
        rows.append({"size": size.name, "model": name, "compiled": compiled, "batch": size.batch,
                     "block_size": size.block_size, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                     "active_params_m": active / 1e6, "ms_per_step": seconds[name] * 1e3,
                     "tokens_per_s": tokens_per_s, "mfu": tokens_per_s * flops / (denominator * 1e12),
                     "mfu_of_measured_matmul": tokens_per_s * flops / (peak["measured_matmul"] * 1e12)})
    for row in rows:
        if row["model"].startswith("moe"):
            dense = next(r for r in rows if r["model"] == row["model"].replace("moe", "dense iso-active"))
            row["tokens_per_s_over_iso_active_dense"] = row["tokens_per_s"] / dense["tokens_per_s"]
    return rows


def print_speed(rows: list[dict]) -> None:
    for row in rows:
        ratio = row.get("tokens_per_s_over_iso_active_dense")
        print(f"   {row['size']:16} {row['model']:22} {'compiled' if row['compiled'] else 'eager':9}"
              f"{row['ms_per_step']:9.1f} ms {row['tokens_per_s']:11.0f} tokens/s  MFU {row['mfu']:6.1%}"
              + (f"  x{ratio:.2f} of iso-active dense" if ratio else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="tiny models and batches (for the test)")
    parser.add_argument("--steps", type=int, default=20, help="training steps of the determinism check")
    parser.add_argument("--repeats", type=int, default=10, help="timed training steps per model (median)")
    parser.add_argument("--no-compile", action="store_true", help="eager steps only")
    parser.add_argument("--budget-s", type=float, default=420, help="skip the parts that would start after this")
    parser.add_argument("--json", help="write the results here (after each part)")
    args = parser.parse_args()
    start, device = time.perf_counter(), torch.device(args.device)
    sizes = SMALL_SIZES if args.small else PAPER_SIZES
    result = {"date": dt.date.today().isoformat(), "torch": torch.__version__, "device": str(device),
              "small": args.small, "skipped": []}

    def save():
        result["elapsed_s"] = time.perf_counter() - start
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)

    result["peak_tflops"] = peak = peak_tflops(device, args.small)
    print(f"1. {peak['name']}, torch {torch.__version__}: datasheet bf16 peak {peak['datasheet_bf16']} TFLOP/s, "
          f"measured {peak['measured_dtype']} matmul {peak['measured_matmul']:.3g} TFLOP/s")
    result["kernels"] = check_kernels(sizes[0], device)
    print(f"2. grouped_mm correct here (the layer uses it on CUDA only): {result['kernels']['grouped_mm_supported']};"
          f" grouped_mm against the loop, max |difference|: {result['kernels']['max_abs_difference'] or '-'}")
    save()
    result["determinism"] = determinism = check_determinism(sizes[0], device, args.steps)
    print(f"3. determinism: {args.steps} training steps twice, weights bit-equal: {determinism['bit_equal']}"
          + (f" ({determinism['error']})" if determinism["error"] else ""))
    save()
    if time.perf_counter() - start < args.budget_s:
        result["time_split"] = split = check_time_split(sizes[1], device, args.repeats)
        print(f"4. {split['size']}, ms per step: " + ", ".join(f"{n} {ms:.1f}" for n, ms in split["ms_per_step"].items()))
        for op, ms in split["top_ops_ms_per_step"]:
            print(f"   {ms:8.2f} ms  {op}")
        save()
        result["routers_strict"], result["routers_host_syncs"] = strict, syncs = check_routers_strict(sizes[0], device)
        print("5. routers with deterministic kernels only (host syncs per training step): " + ", ".join(
            f"{name} {'runs' if error is None else 'FAILS: ' + error}"
            + (f" ({syncs[name]})" if syncs[name] is not None else "") for name, error in strict.items()))
        save()
        result["graph_breaks"] = breaks = graph_breaks(sizes, device)
        print("6. graph breaks under torch.compile: " + "; ".join(
            f"{size} " + ", ".join(f"{name} {count}" for name, count in models.items()) for size, models in breaks.items()))
        save()
    else:
        result["skipped"].append("time split, routers and graph breaks: past --budget-s")
    print(f"7. training steps in bf16 (fp32 on a CPU), median of {args.repeats}")
    result["speed"] = []
    for compiled in (False,) if args.no_compile else (False, True):
        for size in sizes:
            label = f"{size.name} {'compiled' if compiled else 'eager'}"
            if time.perf_counter() - start > args.budget_s:
                result["skipped"].append(f"{label}: past --budget-s")
                print(f"   {label}: skipped, past --budget-s {args.budget_s:.0f}")
                continue
            try:
                rows = check_speed(size, device, compiled, args.repeats, peak)
            except Exception as error:  # one failing configuration (e.g. compile) must not lose the others
                result["skipped"].append(f"{label}: {type(error).__name__}: {first_line(error)}")
                print(f"   {label}: failed, {result['skipped'][-1]}")
                continue
            print_speed(rows)
            result["speed"] += rows
            save()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    save()


if __name__ == "__main__":
    main()
