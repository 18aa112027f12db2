"""docs/performance.md, made from the measurements kept under benchmarks/measured/: every number on the page comes
from one of those files, and each table says the machine and date it was measured on.

    python benchmarks/performance.py > docs/performance.md
    python benchmarks/performance.py record-tests --wall-s 452 470 --passed 816   # each `CI=true bash .ci/run`
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

import gpu_table
from verdicts import MEASURED, RUNS, on_cores

TESTS = "tests_cpu.json"
JOB_DESIGN = "recovery_jobs_cpu.json"


def _load(name: str, measured_dir: Path) -> dict | None:
    path = measured_dir / name
    return json.loads(path.read_text()) if path.is_file() else None


def runs_section(measured_dir: Path) -> list[str]:
    lines = ["## Whole runs", "",
             "Each configuration from a fresh clone with its virtual environment made, `--cores all`. The 16-core "
             "column is an estimate from the run's job table (its job-minutes over 16 cores, at least its longest "
             "job). What each run decided: [verdicts.md](verdicts.md).", "",
             "| run | measured on | date | wall time (min) | jobs | job-minutes | on 16 cores (min, estimated) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for name, title in RUNS.items():
        if (run := _load(name, measured_dir)) is not None:
            lines.append(f"| {title} | {run['machine']} | {run['date']} | {run['wall_s'] / 60:.1f} | {run['jobs']} "
                         f"| {run['job_s'] / 60:.0f} | {on_cores(run, 16) / 60:.0f} |")
    return lines + [""]


def tests_section(measured_dir: Path) -> list[str]:
    if (tests := _load(TESTS, measured_dir)) is None:
        return []
    lines = ["## The test suite", "",
             f"`{tests['command']}` on a clean clone, measured {tests['date']} on {tests['machine']}: {tests['passed']} "
             f"tests passed in {_minutes(tests['runs_s'])} (set-up included; {tests['note']})."]
    if before := tests.get("before"):
        lines[-1] += (f" Side by side on the same machine, each run of this version next to one of {before['what']} "
                      f"(alternating which went first): {before['passed']} tests in {_minutes(before['runs_s'])}.")
    return lines + [""]


def _minutes(runs_s: list[float]) -> str:
    """'7.5 minutes', or over several runs the mean and each run: '7.5 minutes on average, runs of 7.2 and 7.8'."""
    mean = f"{sum(runs_s) / len(runs_s) / 60:.1f} minutes"
    each = [f"{s / 60:.1f}" for s in runs_s]
    return mean if len(runs_s) == 1 else f"{mean} on average, runs of {', '.join(each[:-1])} and {each[-1]}"


def job_design_section(measured_dir: Path) -> list[str]:
    if (measured := _load(JOB_DESIGN, measured_dir)) is None:
        return []
    lines = ["## One recovery job per method", "",
             f"Each recovery method trains in a job of its own, so that editing one router reruns only its jobs; each job "
             f"pays a process start-up (importing torch and its compiler stack, loading the base model) that one job per "
             f"setting and seed paid once. Measured {measured['date']} on {measured['machine']}, from an empty results "
             f"directory, one run after another on a quiet machine: {measured['before']} against this version.", "",
             "| configuration | recovery jobs before | after | wall time before (min) | after (min) | after / before |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in measured["rows"]:
        lines.append(f"| {row['config']} | {row['jobs_before']} | {row['jobs_after']} | {row['before_s'] / 60:.1f} "
                     f"| {row['after_s'] / 60:.1f} | {row['after_s'] / row['before_s']:.2f} |")
    return lines + [""]


def toy_seeds_section(measured_dir: Path) -> list[str]:
    if (measured := _load("toy_seeds_cpu.json", measured_dir)) is None:
        return []
    lines = ["## Many toy seeds in one job", "",
             f"`benchmarks/toy_seeds.py`, measured {measured['date']} on {measured['machine']} ({measured['device']}, "
             f"torch {measured['torch']}), one job after another on a quiet machine: the seeds each toy ran before, "
             f"one job per seed ({measured['before']}, start-up included), against {measured['many']} seeds in one "
             "job, trained side by side.", "",
             f"| toy | jobs of 1 seed before | their time (s) | 1 job of {measured['many']} seeds (s) | "
             f"{measured['many']} seeds cost (one-seed jobs) |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in measured["rows"]:
        lines.append(f"| {row['experiment']} | {len(row['one_job_per_seed_s'])} | {sum(row['one_job_per_seed_s']):.1f} "
                     f"| {row['one_job_s']:.1f} | {row['per_seed_jobs_equivalent']:.1f} |")
    lines.append(f"| all | {sum(len(r['one_job_per_seed_s']) for r in measured['rows'])} | "
                 f"{measured['few_total_s']:.1f} | {measured['many_total_s']:.1f} | |")
    return lines + [""]


def gpu_section(measured_dir: Path) -> list[str]:
    """Each GPU measurement kept, by the script that made it (its file: <script>_<device>.json)."""
    files = [path for script in gpu_table.RENDERERS for path in sorted(measured_dir.glob(f"{script}_*.json"))]
    lines = ["## One GPU", ""] if files else []
    for path in files:
        measured = json.loads(path.read_text())
        renderer = gpu_table.RENDERERS[path.stem.rsplit("_", 1)[0]]
        lines += [f"Measured {measured['date']} (`{path.name}`). " + renderer(measured), ""]
    return lines


def page(measured_dir: Path = MEASURED) -> str:
    lines = ["# Performance", "",
             "<!-- Generated by `python benchmarks/performance.py > docs/performance.md` from benchmarks/measured/; "
             "do not edit. -->", "",
             "What the pipeline costs, as measured. Timings on shared machines vary by 10-30% from run to run and by up "
             "to 2.5x between machines: compare numbers measured side by side, in one table.", ""]
    for section in (runs_section, tests_section, job_design_section, toy_seeds_section, gpu_section):
        lines += section(measured_dir)
    return "\n".join(lines).rstrip() + "\n"


def record_tests(runs_s: list[float], passed: int, note: str, before: dict | None = None) -> dict:
    """Clean-clone test runs (seconds each); `before`: {what, runs_s, passed} of an earlier version's runs, each
    next to one of these on the same machine."""
    return {"command": "CI=true bash .ci/run", "date": dt.date.today().isoformat(), "runs_s": runs_s,
            "passed": passed, "machine": f"{platform.machine()}, {os.cpu_count()} cores", "note": note} | (
        {"before": before} if before else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    keep = sub.add_parser("record-tests", help=f"keep clean-clone test runs' times in benchmarks/measured/{TESTS}")
    keep.add_argument("--wall-s", type=float, nargs="+", required=True, help="each run's seconds")
    keep.add_argument("--passed", type=int, required=True)
    keep.add_argument("--note", default="Chromium and SLURM already installed")
    keep.add_argument("--before", help="which earlier version ran next to each run, on the same machine (words)")
    keep.add_argument("--before-wall-s", type=float, nargs="+", help="its runs' seconds, in the same order")
    keep.add_argument("--before-passed", type=int)
    args = parser.parse_args()
    if args.command == "record-tests":
        before = args.before and {"what": args.before, "runs_s": args.before_wall_s, "passed": args.before_passed}
        if before and None in before.values():
            parser.error("--before needs --before-wall-s and --before-passed")
        if before and len(before["runs_s"]) != len(args.wall_s):
            parser.error("--before-wall-s needs a run next to each of --wall-s")
        record = record_tests(args.wall_s, args.passed, args.note, before)
        (MEASURED / TESTS).write_text(json.dumps(record, indent=1) + "\n")
    else:
        print(page(), end="")


if __name__ == "__main__":
    main()
