"""Training throughput of train_lm in one process vs data-parallel under torchrun, side by side: tokens/s of
the same GPT and the same global batch for each process count (one torchrun launch per count, timed by
rank 0 after a warm-up run that also sets up the process group).

On GPUs each process takes one GPU (--procs up to the GPU count); on the CPU, --threads is split between the
processes, so that every count uses the same cores.

    python benchmarks/ddp_throughput.py --device cpu --threads 2                        # gloo, 1 vs 2 processes
    python benchmarks/ddp_throughput.py --device cuda --procs 1 2 4 --batch 64 --router rpo
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(spec: dict) -> None:
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from moe_rpo import schema  # noqa: PLC0415
    from moe_rpo.models import GPT, GPTConfig  # noqa: PLC0415
    from moe_rpo.training.distributed import is_main  # noqa: PLC0415
    from moe_rpo.training.loop import train_lm  # noqa: PLC0415
    from moe_rpo.training.settings import TrainSettings  # noqa: PLC0415

    torch.set_num_threads(spec["threads"])
    vocab = spec["vocab_size"]
    rng = np.random.default_rng(0)
    train_tokens = rng.integers(0, vocab, 1_000_000).astype(np.uint16)
    val_tokens = rng.integers(0, vocab, 100_000).astype(np.uint16)
    moe = {} if spec["router"] == "dense" else {
        "moe_layers": tuple(range(spec["n_layer"])), "num_experts": spec["experts"], "k": spec["k"],
        "router": {"method": spec["router"]}}
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=spec["block_size"], n_layer=spec["n_layer"],
                          n_head=spec["n_head"], n_embd=spec["n_embd"], **moe))

    def run(steps):
        settings = TrainSettings.of(schema.validate_definition(
            {"steps": steps, "batch_size": spec["batch"], "block_size": spec["block_size"], "eval_every": 10 ** 9,
             "eval_batches": 1, "device": spec["device"], "bf16": spec["bf16"]}, "lm_train"))
        started = time.perf_counter()
        train_lm(model, train_tokens, val_tokens, settings, seed=0, desc=f"{os.environ.get('WORLD_SIZE', 1)} proc")
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - started

    run(spec["warmup"])
    short, long = run(1), run(1 + spec["steps"])  # the difference leaves out the evaluations and the set-up
    if is_main():
        print("RESULT " + json.dumps({"tokens_per_s": spec["steps"] * spec["batch"] * spec["block_size"] /
                                      (long - short)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="CPU threads in all, split between the processes")
    parser.add_argument("--batch", type=int, default=16, help="global batch (divisible by every process count)")
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--router", default="softmax_topk", help="router method of every block, or 'dense'")
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast on GPUs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    rows = []
    for procs in args.procs:
        spec = {key: value for key, value in vars(args).items() if key not in ("procs", "worker")}
        spec["threads"] = max(1, args.threads // procs)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": str(spec["threads"])}
        job = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                              str(procs), __file__, "--worker", json.dumps(spec)],
                             env=env, capture_output=True, text=True)
        lines = [line for line in job.stdout.splitlines() if line.startswith("RESULT ")]
        if job.returncode or not lines:
            sys.exit(f"{procs} processes failed:\n{job.stderr[-4000:]}")
        rows.append((procs, spec["threads"], json.loads(lines[0][len("RESULT "):])["tokens_per_s"]))
    print(f"GPT {args.n_layer} layers, n_embd {args.n_embd}, router {args.router}, global batch {args.batch} x "
          f"{args.block_size} tokens, device {args.device}")
    print(f"{'processes':>9} {'threads/proc':>12} {'tokens/s':>12} {'speed-up':>9}")
    for procs, threads, rate in rows:
        print(f"{procs:9d} {threads:12d} {rate:12.0f} {rate / rows[0][2]:9.2f}")


if __name__ == "__main__":
    main()
