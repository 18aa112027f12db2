"""Many toy seeds in one job against one job per seed, side by side in one run on this machine.

For each toy experiment (default settings, 2000-3000 steps): the wall time of the job design the pipeline had
before, one process per seed (its start-up included) for the seeds it ran then (3 per toy, 16 for the barrier
toy; `--few` sets one number for all), and of today's, one process training `--many` seeds side by side
(toy/seeds.py). Both run one after the other on one thread, so run it on a quiet machine. Writes a JSON record
(machine, date, versions, times, ratios) that docs/verdicts.md is made from.

    python benchmarks/toy_seeds.py --json benchmarks/measured/toy_seeds_cpu.json
    git worktree add /tmp/before 6920da5     # the last version with one job per seed ...
    python benchmarks/toy_seeds.py --before-src /tmp/before/src --json ...   # ... run as it ran then
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
from moe_rpo import sections

EXPERIMENTS = ("routing", "collapse", "dilemma", "barrier")
BEFORE = {"routing": 3, "collapse": 3, "dilemma": 3, "barrier": 16}  # the default seeds of one job per seed


def timed(command: list[str], src: Path | None = None) -> float:
    """Wall time of one process, start-up included (with `src`: that checkout's package)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"} | ({"PYTHONPATH": str(src)} if src else {})
    clock = time.perf_counter()
    subprocess.run([sys.executable, "-m", "moe_rpo", *command], check=True, capture_output=True, env=env)
    return time.perf_counter() - clock


def job_seconds(experiment: str, seeds: list[int], out: Path, steps: int | None) -> float:
    """Wall time of one `moe-rpo toy` process of this checkout training `seeds`."""
    settings = sections.experiment_settings(cfg.validate({}), experiment) | {"seeds": seeds}
    if steps:
        settings["steps"] = steps
    return timed(["toy", experiment, "--settings", json.dumps(settings), "--out", str(out)])


def before_seconds(experiment: str, seed: int, out: Path, src: Path) -> float:
    """Wall time of one job of the version that ran one seed per job (its `toy --seed` command, its defaults)."""
    return timed(["toy", experiment, "--seed", str(seed), "--out", str(out)], src)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--few", type=int, help="seeds run one process each, for every toy (default: as before, "
                        f"{BEFORE})")
    parser.add_argument("--many", type=int, default=64, help="seeds run in one process (default: %(default)s)")
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    parser.add_argument("--steps", type=int, help="training steps (default: each toy's default)")
    parser.add_argument("--before-src", type=Path, help="the src/ of a version with one job per seed, whose jobs "
                        "the before side runs (default: this version, one seed a job)")
    parser.add_argument("--json", type=Path, help="write the record here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for experiment in args.experiments:
            out = Path(tmp) / f"{experiment}_before"
            per_seed = [before_seconds(experiment, seed, out, args.before_src) if args.before_src else
                        job_seconds(experiment, [seed], out, args.steps) for seed in range(args.few or BEFORE[experiment])]
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
                  "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                  "device": "cpu, 1 thread", "torch": torch.__version__, "python": platform.python_version(),
                  "many": args.many, "steps": args.steps or "default", "rows": rows,
                  "before": "the one-job-per-seed version" if args.before_src else "this version, one seed a job",
                  "few_total_s": few, "many_total_s": many}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
