"""Tokens/s of the sharded corpus preprocessing (inventory, N shard processes in parallel, gather: what
the Snakemake rules run) against a single-process nanoGPT-style baseline (read every document, encode,
concatenate in memory, write), on the same corpus and machine. Not a test: run on demand.

    python benchmarks/preprocess_throughput.py --copies 4 --shards 2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from moe_rpo import schema  # noqa: E402
from moe_rpo.data import shakespeare  # noqa: E402
from moe_rpo.data.prepare import inventory  # noqa: E402
from moe_rpo.data.sources import read_documents  # noqa: E402
from moe_rpo.data.tokenizers import build_tokenizer  # noqa: E402


def write_corpus(root: Path, copies: int) -> None:
    """Shakespeare's scenes, `copies` times, as .jsonl files of a local corpus."""
    scenes = shakespeare.documents("scene")
    root.mkdir(parents=True)
    for copy in range(copies):
        with (root / f"part{copy:03d}.jsonl").open("w") as handle:
            for scene in scenes:
                handle.write(json.dumps({"text": scene}) + "\n")


def baseline(spec: dict, out: Path) -> int:
    """nanoGPT prepare.py style in one process: every document's ids in memory, then one write per split."""
    tokenizer = build_tokenizer("gpt2")
    record = inventory(spec)
    ids = {"train": [], "val": []}
    from moe_rpo.data.prepare import is_validation  # noqa: PLC0415

    for doc in read_documents(spec, record["layout"], 0, record["documents"]):
        split = "val" if is_validation(doc.index, spec["split_seed"], spec["val_fraction"]) else "train"
        ids[split].append(np.array(tokenizer.encode(doc.text) + [tokenizer.eot], dtype=np.uint16))
    out.mkdir(parents=True)
    total = 0
    for split, parts in ids.items():
        arr = np.concatenate(parts)
        total += len(arr)
        arr.tofile(out / f"{split}.bin")
    return total


ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}


def run_processes(commands: list[list[str]]) -> float:
    """Run commands in parallel; return the largest peak memory (MiB) among them."""
    jobs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for cmd in commands]
    peak = 0.0
    for job in jobs:
        _, status, usage = os.wait4(job.pid, 0)
        job.returncode = os.waitstatus_to_exitcode(status)
        if job.returncode:
            raise RuntimeError(f"{' '.join(job.args[:5])} failed: {job.stderr.read().decode()[-2000:]}")
        peak = max(peak, usage.ru_maxrss / 1024)
    return peak


def sharded(settings: str, out: Path, shards: int) -> float:
    """The pipeline's three steps as separate processes, the shards in parallel; returns peak MiB."""
    run = [sys.executable, "-m", "moe_rpo"]
    inventory_file = str(out / "inventory.json")
    peaks = [run_processes([run + ["corpus-inventory", "bench", "--settings", settings, "--out", inventory_file]]),
             run_processes([run + ["corpus-shard", "--inventory", inventory_file, "--shards", str(shards),
                                   "--shard", str(i), "--out", str(out / "shards" / str(i))] for i in range(shards)]),
             run_processes([run + ["corpus-gather", "--inventory", inventory_file, "--out-dir", str(out), "--shards",
                                   *[str(out / "shards" / str(i)) for i in range(shards)]]])]
    return max(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=4, help="copies of Shakespeare (~5 MB each) in the corpus")
    parser.add_argument("--shards", type=int, default=os.cpu_count(), help="parallel shard processes")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline-only", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_only:
        baseline(json.loads(args.baseline_only[0]), Path(args.baseline_only[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_corpus(tmp / "corpus", args.copies)
        spec = schema.validate_definition({"source": "local", "path": str(tmp / "corpus"), "shards": args.shards},
                                       "corpus_spec")
        settings = json.dumps(spec)
        names = ("baseline (1 process)", f"sharded ({args.shards} processes)")
        seconds, peaks = {name: [] for name in names}, {}
        for repeat in range(args.repeats):
            for name in names:
                out = tmp / f"{repeat}-{name.split()[0]}"
                start = time.perf_counter()
                if name.startswith("baseline"):
                    peaks[name] = run_processes([[sys.executable, __file__, "--baseline-only", settings, str(out)]])
                else:
                    peaks[name] = sharded(settings, out, args.shards)
                seconds[name].append(time.perf_counter() - start)
        meta = json.loads((out / "meta.json").read_text())
        tokens = sum(info["tokens"] for info in meta["splits"].values())
        for split in ("train", "val"):  # the two paths must produce the same bins
            assert (out / f"{split}.bin").read_bytes() == (tmp / f"{repeat}-baseline" / f"{split}.bin").read_bytes()
        print(f"corpus: {args.copies} x Shakespeare, {tokens:,} GPT-2 tokens; {os.cpu_count()} cores; "
              f"best of {args.repeats}; identical bins from both")
        rates = {name: tokens / min(times) for name, times in seconds.items()}
        for name in names:
            print(f"  {name:<26} {rates[name]:>12,.0f} tokens/s   peak memory of one process {peaks[name]:.0f} MiB")
        print(f"  ratio sharded / baseline: {rates[names[1]] / rates[names[0]]:.2f}x tokens/s, "
              f"{peaks[names[1]] / peaks[names[0]]:.2f}x peak memory")


if __name__ == "__main__":
    main()
