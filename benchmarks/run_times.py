"""Per-rule times of one Snakemake run, read from its log (.snakemake/log/*.snakemake.log): for each rule its
jobs, their summed wall time (job-minutes; the jobs run one thread each unless a rule says otherwise), and
when its first job started and its last ended, in minutes from the run's start. The README's table of the
default run's times is this script's output.

    python benchmarks/run_times.py                      # the newest log
    python benchmarks/run_times.py .snakemake/log/2026-12-04T183244.309761.snakemake.log
"""
from __future__ import annotations

import argparse
import re
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^    jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def job_times(log: str) -> dict[int, dict]:
    """jobid -> {rule, start, end} (datetimes) of every job the log saw start."""
    jobs, stamp, starting = {}, None, None
    for line in log.splitlines():
        if match := STAMP.match(line):
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        elif match := START.match(line):
            starting = {"rule": match.group(1), "start": stamp, "end": None}
        elif (match := JOBID.match(line)) and starting is not None:
            jobs[int(match.group(1))], starting = starting, None
        elif match := FINISHED.match(line):
            jobs[int(match.group(1))]["end"] = stamp
    return jobs


def table(jobs: dict[int, dict]) -> str:
    begin = min(job["start"] for job in jobs.values())
    finished = [job for job in jobs.values() if job["end"] is not None]
    end = max(job["end"] for job in finished)
    rules: dict[str, list[dict]] = {}
    for job in jobs.values():
        rules.setdefault(job["rule"], []).append(job)

    def minutes(delta) -> float:
        return delta.total_seconds() / 60

    lines = ["| rule | jobs | job-minutes | first start | last end |", "| --- | ---: | ---: | ---: | ---: |"]
    for rule, group in sorted(rules.items(), key=lambda item: min(job["start"] for job in item[1])):
        done = [job for job in group if job["end"] is not None]
        lines.append(f"| `{rule}` | {len(group)} | {sum(minutes(j['end'] - j['start']) for j in done):.1f} "
                     f"| {minutes(min(j['start'] for j in group) - begin):.1f} "
                     f"| {minutes(max(j['end'] for j in done) - begin) if done else float('nan'):.1f} |")
    total = sum(minutes(job["end"] - job["start"]) for job in finished)
    lines.append(f"| all | {len(jobs)} | {total:.1f} | 0.0 | {minutes(end - begin):.1f} |")
    if len(finished) < len(jobs):
        lines.append(f"\n{len(jobs) - len(finished)} jobs did not finish.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", nargs="?", type=Path, help="a Snakemake log (default: the newest in .snakemake/log)")
    args = parser.parse_args()
    log = args.log or max(Path(".snakemake/log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    print(f"{log}\n")
    print(table(job_times(log.read_text())))


if __name__ == "__main__":
    main()
