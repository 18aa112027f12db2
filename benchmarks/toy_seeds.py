"""Many toy seeds in one job against one job per seed, side by side in one run on this machine.

For each toy experiment (default settings, 2000-3000 steps): the wall time of the job design the pipeline had
before, one process per seed (its start-up included) for the seeds it ran then (`--before`: 3 per toy, 16 for
the barrier toy), and of today's, one process training `--many` seeds side by side (toy/seeds.py). Both run one after the other on one thread, so run it on a quiet
machine. Writes a JSON record (machine, date, versions, times, ratios) that docs/performance.md is made from.

    python benchmarks/toy_seeds.py --json benchmarks/measured/toy_seeds_cpu.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from moe_rpo import config as cfg

EXPERIMENTS = ("routing", "collapse", "dilemma", "barrier")
BEFORE = {"routing": 3, "collapse": 3, "dilemma": 3, "barrier": 16}  # the default seeds of one job per seed


def job_seconds(experiment: str, seeds: list[int], out: Path, steps: int | None) -> float:
    """Wall time of one `moe-rpo toy` process training `seeds`, start-up included."""
    settings = cfg.experiment_settings(cfg.validate({}), experiment) | {"seeds": seeds}
    if steps:
        settings["steps"] = steps
    clock = time.perf_counter()
    subprocess.run([sys.executable, "-m", "moe_rpo", "toy", experiment, "--settings", json.dumps(settings),
                    "--out", str(out)], check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--few", type=int, help="seeds run one process each, for every toy (default: as before, "
                        f"{BEFORE})")
    parser.add_argument("--many", type=int, default=64, help="seeds run in one process (default: %(default)s)")
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    parser.add_argument("--steps", type=int, help="training steps (default: each toy's default)")
    parser.add_argument("--json", type=Path, help="write the record here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for experiment in args.experiments:
            per_seed = [job_seconds(experiment, [seed], Path(tmp) / f"{experiment}_{seed}", args.steps)
                        for seed in range(args.few or BEFORE[experiment])]
            together = job_seconds(experiment, list(range(args.many)), Path(tmp) / f"{experiment}_all", args.steps)
            rows.append({"experiment": experiment, "one_job_per_seed_s": per_seed, "seeds_per_job": args.many,
                         "one_job_s": together, "per_seed_jobs_equivalent": together / (sum(per_seed) / len(per_seed))})
            print(f"{experiment:9s} {len(per_seed)} jobs of 1 seed: {sum(per_seed):6.1f} s | 1 job of {args.many} "
                  f"seeds: {together:6.1f} s | {args.many} seeds cost {rows[-1]['per_seed_jobs_equivalent']:.1f} "
                  "one-seed jobs")
    few, many = sum(sum(r["one_job_per_seed_s"]) for r in rows), sum(r["one_job_s"] for r in rows)
    jobs = sum(len(r["one_job_per_seed_s"]) for r in rows)
    print(f"all toys  one seed a job ({jobs} jobs): {few:.1f} s | {args.many} seeds a job ({len(rows)} jobs): "
          f"{many:.1f} s (ratio {many / few:.2f})")
    if args.json:
        record = {"benchmark": "toy_seeds", "date": dt.date.today().isoformat(),
                  "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
                  "device": "cpu, 1 thread", "torch": torch.__version__, "python": platform.python_version(),
                  "many": args.many, "steps": args.steps or "default", "rows": rows, "few_total_s": few, "many_total_s": many}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
