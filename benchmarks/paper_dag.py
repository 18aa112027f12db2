"""Every GPU rule of the paper configuration, run through Snakemake on one machine with the step counts cut, so
that each has run once on a GPU before a cluster spends GPU-hours on it; written to a JSON with each rule's jobs
and wall times.

The paper configuration (config/config.yaml, full.yaml and paper.yaml) is run with one more config file that this
script writes: its two Hub corpora (OpenWebText, TinyStories) become local JSON-lines files of Shakespeare's
scenes read through the same `datasets` path (`dataset: json`), its Hub GPT-2 a randomly initialised GPT-2
124M saved with `transformers` in a local directory (the same `from_pretrained` path), every training section
runs --steps steps with one evaluation and one checkpoint at the end, and each experiment runs its first seed
(--all-seeds: every seed). Models, batches and contexts keep the paper's shapes; --tiny shrinks them (the test).
The GPU jobs are those whose rule asks for a GPU (`resources: gpu=N`, which the SLURM profile sends to the GPU
partition); with --one-per-rule the first job of each such rule runs (with what it needs), else every one.

    python benchmarks/paper_dag.py --workdir /tmp/paper_dag --json paper_dag.json            # on a GPU machine
    python benchmarks/paper_dag.py --workdir /tmp/dag --tiny --device cpu --one-per-rule     # the test's
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from moe_rpo.data.shakespeare import documents  # noqa: E402

PAPER = [ROOT / "config" / name for name in ("config.yaml", "full.yaml", "paper.yaml")]
TRAINING_SECTIONS = ("recovery", "shakespeare_moe", "pretraining")
HUB_CORPORA = ("openwebtext", "tinystories")
TINY_MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}


def write_documents(folder: Path) -> str:
    """Shakespeare's scenes as JSON-lines files with a `text` column (OpenWebText's format); their glob."""
    folder.mkdir(parents=True, exist_ok=True)
    scenes = documents("scene")
    for part in range(2):
        with open(folder / f"part{part}.jsonl", "w") as f:
            for text in scenes[part::2]:
                f.write(json.dumps({"text": text}) + "\n")
    return str(folder / "*.jsonl")


def write_gpt2(folder: Path, tiny: bool) -> str:
    """A randomly initialised GPT-2 (124M, or --tiny's) saved as `transformers` saves the Hub's."""
    from transformers import GPT2Config, GPT2LMHeadModel

    shape = {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 64} if tiny else {}
    GPT2LMHeadModel(GPT2Config(**shape)).save_pretrained(folder)
    return str(folder)


def overlay(workdir: Path, steps: int, device: str, tiny: bool, all_seeds: bool) -> dict:
    """The config file merged over the paper configuration (see the module's docstring)."""
    cut = {"steps": steps, "eval_every": steps, "checkpoint_every": steps, "eval_batches": 2, "device": device}
    if tiny:
        cut |= {"batch_size": 4, "block_size": TINY_MODEL["block_size"]}
    files = write_documents(workdir / "documents")
    config = {"corpora": {name: {"dataset": "json", "data_files": files, "revision": None, "shards": 2,
                                 "val_fraction": 0.05} for name in HUB_CORPORA},
              "base_model": {"hf_name": write_gpt2(workdir / "gpt2", tiny),
                             "train": {"eval_batches": 2, "device": device}
                             | ({"block_size": TINY_MODEL["block_size"]} if tiny else {})}}
    for section in TRAINING_SECTIONS:
        config[section] = {"train": dict(cut)} | ({} if all_seeds else {"seeds": [0]})
        if tiny and section != "recovery":  # recovery's model is the base model
            config[section]["model"] = dict(TINY_MODEL)
    if not all_seeds:
        config["seeds"] = [0]
    return config


def snakemake(workdir: Path, configs: list[Path], *arguments: str, capture: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
               "--configfile", *map(str, configs), *arguments]
    # the jobs' `python -m moe_rpo` is this interpreter (python3 alone, or an environment not activated, elsewhere)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(command, check=True, text=True, capture_output=capture,
                          env={**os.environ, "PATH": path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})


@dataclass(frozen=True)
class Job:
    output: str  # its first output
    benchmark: str  # the Snakemake benchmark file it writes (wall seconds: column s)


def gpu_jobs(workdir: Path, configs: list[Path]) -> dict[str, list[Job]]:
    """The jobs that ask for a GPU (`resources: gpu=N`) in this configuration, by rule, as a dry run of the whole
    workflow lists them."""
    plan = snakemake(workdir, configs, "--dry-run", "all", capture=True).stdout
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", plan):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        resources = re.search(r"\n    resources: (.*)", block)
        if rule and resources and re.search(r"\bgpu=[1-9]", resources.group(1)):
            field = {name: re.search(rf"\n    {name}: ([^,\n]+)", block).group(1) for name in ("output", "benchmark")}
            jobs.setdefault(rule.group(1), []).append(Job(**field))
    return {rule: sorted(rule_jobs, key=lambda job: job.output) for rule, rule_jobs in sorted(jobs.items())}


def wall_seconds(workdir: Path, job: Job) -> float:
    with open(workdir / job.benchmark) as f:
        return float(next(csv.DictReader(f, delimiter="\t"))["s"])


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device != "cpu" and torch.cuda.is_available() else "CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="where the run's results go (made if missing)")
    parser.add_argument("--steps", type=int, default=10, help="training steps of every job (default 10)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="every training job's device")
    parser.add_argument("--tiny", action="store_true", help="tiny models and batches instead of the paper's shapes")
    parser.add_argument("--all-seeds", action="store_true", help="every seed of each experiment, not the first")
    parser.add_argument("--one-per-rule", action="store_true", help="one job of each GPU rule, not all of them")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--jobs-per-gpu", type=int, default=4, help="GPU jobs at once (they share the one GPU)")
    parser.add_argument("--dry-run", action="store_true", help="list the GPU jobs it would run, and stop")
    parser.add_argument("--json", help="write the rules' jobs and times here")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    config = args.workdir / "paper_dag.yaml"
    config.write_text(yaml.safe_dump(overlay(args.workdir, args.steps, args.device, args.tiny, args.all_seeds)))
    configs = [*PAPER, config]
    jobs = gpu_jobs(args.workdir, configs)
    chosen = {rule: rule_jobs[:1] if args.one_per_rule else rule_jobs for rule, rule_jobs in jobs.items()}
    targets = [job.output for rule_jobs in chosen.values() for job in rule_jobs]
    print(f"{len(targets)} jobs of the GPU rules " + ", ".join(f"{rule} {len(rule_jobs)}" for rule, rule_jobs in jobs.items())
          + (" (one of each)" if args.one_per_rule else ""), flush=True)
    if args.dry_run:
        return
    start = time.perf_counter()
    snakemake(args.workdir, configs, "--cores", str(args.cores), "--resources", f"gpu={args.jobs_per_gpu}",
              "--quiet", "rules", "--rerun-incomplete", *targets)
    wall = time.perf_counter() - start
    times = {rule: [wall_seconds(args.workdir, job) for job in rule_jobs] for rule, rule_jobs in chosen.items()}
    result = {"date": dt.date.today().isoformat(), "device": device_name(args.device), "torch": torch.__version__,
              "steps": args.steps, "tiny": args.tiny, "all_seeds": args.all_seeds, "one_per_rule": args.one_per_rule,
              "wall_s": wall, "jobs_in_config": {rule: len(rule_jobs) for rule, rule_jobs in jobs.items()},
              "rules": {rule: {"jobs": len(seconds), "job_s": sorted(seconds)} for rule, seconds in times.items()}}
    for rule, row in result["rules"].items():
        print(f"{rule:22} {row['jobs']:4d} jobs, {sum(row['job_s']):8.1f} job-s, longest {max(row['job_s']):.1f} s")
    print(f"{wall:.0f} s in all on {result['device']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
