"""The verdicts the pipeline measured, kept with the machine, date and wall time of the run that gave them, and
the docs page made from them (docs/verdicts.md: every number on it comes from these files).

    python benchmarks/verdicts.py record results --run "make run" --wall-s 402 \\
        --json benchmarks/measured/claims_default_cpu.json          # after a run: keep its claims.json
    python benchmarks/verdicts.py page > docs/verdicts.md           # the page, from benchmarks/measured/
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
from pathlib import Path

MEASURED = Path(__file__).parent / "measured"
RUNS = {"claims_default_cpu.json": "The default run (`make run`)",
        "claims_regime_cpu.json": "The paper's regime with every reading (`make replicate`)",
        "claims_full_cpu.json": "The full run (`config/full.yaml`: every router in the benchmark)"}
MIN_SEEDS_FOR_AN_INTERVAL = 4  # of the benchmark's probability of improvement (moe_rpo.improvement.separable)


def job_seconds(results: Path) -> dict[str, float]:
    """Each job's wall time, from the run's Snakemake benchmark files, by the file's path under benchmarks/."""
    times = {}
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        lines = path.read_text().splitlines()
        if len(lines) > 1:
            times[str(path.relative_to(results / "benchmarks"))] = float(lines[1].split("\t")[0])
    return times


def record(results: Path, run: str, wall_s: float, note: str = "") -> dict:
    claims, jobs = json.loads((results / "claims.json").read_text()), job_seconds(results)
    seeded = [s for key, s in jobs.items() if key.startswith("lm_") and "/seed" in key]  # a job per seed
    improvement = results / "tables" / "lm_benchmark_improvement_values.csv"
    rows = list(csv.DictReader(improvement.open())) if improvement.is_file() else []
    tested = [row for row in rows if row["low"]]
    resolved = {"pairs": len(rows), "with_interval": len(tested),
                "resolved": sum(row["resolved"] == "True" for row in tested),
                "in_the_arms_favour": sum(row["resolved"] == "True" and float(row["low"]) > 0.5 for row in tested)}
    return {"run": run, "note": note, "date": dt.date.today().isoformat(), "wall_s": wall_s, "benchmark": resolved,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "cores_used": os.cpu_count(),
            "jobs": len(jobs), "job_s": sum(jobs.values()), "longest_job_s": max(jobs.values(), default=0.0),
            "seed_job_s": sum(seeded), "claims": claims["claims"], "thresholds": claims["thresholds"]}


def on_cores(measured: dict, cores: int) -> float:
    """A run's wall time on `cores` cores, estimated from its job table: its summed job time spread over the cores,
    and never less than its longest job (a lower bound: the jobs' dependencies can only add to it)."""
    return max(measured["job_s"] / cores, measured["longest_job_s"])


def _number(value) -> str:
    return "–" if value is None else f"{value:.3g}"


def _effect(c: dict) -> str:
    interval = f" [{_number(c['low'])}, {_number(c['high'])}]" if c["low"] != c["high"] else ""
    return f"{c['label']}: {_number(c['value'])}{interval}, n={c['n']}"


def _seeds(c: dict) -> str:
    seeds = c.get("seeds_to_decide")
    return "–" if seeds is None else "more than 10000" if seeds > 10000 else str(seeds)


def benchmark_line(measured: dict) -> str:
    """How many of the router benchmark's differences the run resolves, and what more seeds would cost."""
    bench = measured.get("benchmark")
    if not bench or not bench["pairs"]:
        return ""
    line = (f"The router benchmark resolves {bench['resolved']} of its {bench['with_interval']} pairwise differences "
            f"that have an interval ({bench['in_the_arms_favour']} in the arm's favour; "
            f"{bench['pairs'] - bench['with_interval']} more have too few seeds for one). ")
    seeds = max((c["n"] for claim in measured["claims"] if claim["id"].startswith("lm_")
                 for c in claim["comparisons"]), default=0)  # the language-model experiments' seeds
    if bench["pairs"] > bench["with_interval"] and measured.get("seed_job_s") and seeds:
        scale = 1 + measured["seed_job_s"] * (MIN_SEEDS_FOR_AN_INTERVAL / seeds - 1) / measured["job_s"]
        line += (f"Its recovery and Shakespeare columns need {MIN_SEEDS_FOR_AN_INTERVAL} seeds an arm for an interval "
                 f"(`--config seeds='[0,1,2,3]'`): about {measured['wall_s'] * scale / 60:.0f} minutes, estimated by "
                 f"scaling its per-seed language-model jobs from {seeds} seeds to {MIN_SEEDS_FOR_AN_INTERVAL}. ")
    return line


def run_section(name: str, measured: dict) -> list[str]:
    claims = measured["claims"]
    counts = {v: sum(c["verdict"] == v for c in claims) for v in ("reproduced", "refuted", "inconclusive")}
    lines = [f"## {RUNS.get(name, name)}", "",
             f"`{measured['run']}`, measured {measured['date']} on {measured['machine']}: "
             f"{measured['wall_s'] / 60:.1f} minutes of wall time on {measured['cores_used']} cores ({measured['jobs']} "
             f"jobs, {measured['job_s'] / 60:.0f} job-minutes; on a 16-core workstation about "
             f"{on_cores(measured, 16) / 60:.0f} minutes, estimated from the job table: the job-minutes over 16 cores, "
             "at least the longest job; on one GPU: not measured). "
             + (f"{measured['note']} " if measured.get("note") else "")
             + benchmark_line(measured)
             + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) + f" of {len(claims)} claims.", "",
             "| claim | verdict | effects (mean [95% interval], seeds) | smallest detectable | seeds to decide |",
             "| --- | --- | --- | --- | --- |"]
    for claim in claims:
        comparisons = claim["comparisons"]
        lines.append(f"| `{claim['id']}` | **{claim['verdict']}** | "
                     + "<br>".join(_effect(c) for c in comparisons) + " | "
                     + "<br>".join(_number(c.get("mde")) for c in comparisons) + " | "
                     + "<br>".join(_seeds(c) for c in comparisons) + " |")
    lines += ["", "What would decide each undecided claim:", ""]
    lines += [f"- `{c['id']}`: {c.get('to_decide') or 'see its reason'}. Why undecided: {c['reason']}"
              for c in claims if c["verdict"] == "inconclusive"] or ["- none: every claim is decided"]
    robust = [c for c in claims if c.get("readings")]
    for claim in robust:
        lines += ["", f"**{claim['claim']}** {claim['robustness']}.", "",
                  "| reading | verdict | effects (mean [95% interval], seeds) |", "| --- | --- | --- |"]
        lines += [f"| {row['reading']} | {row['verdict']} | " + "<br>".join(_effect(e) for e in row["effects"]) + " |"
                  for row in claim["readings"]]
    return lines + [""]


def page(measured_dir: Path = MEASURED) -> str:
    lines = ["# Verdicts", "",
             "<!-- Generated by `python benchmarks/verdicts.py page > docs/verdicts.md` from benchmarks/measured/; "
             "do not edit. -->", "",
             "What the pipeline decided, run by run, with how sure it is: each comparison's mean and 95% interval, the "
             "smallest effect its seeds detect (two-sided alpha 0.05, power 0.8) and about how many seeds would "
             "decide it at the observed mean and spread. How the verdicts are reached: [statistics.md](statistics.md).",
             ""]
    for name in RUNS:
        if (measured_dir / name).is_file():
            lines += run_section(name, json.loads((measured_dir / name).read_text()))
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    keep = sub.add_parser("record", help="keep a finished run's claims.json with its machine, date and wall time")
    keep.add_argument("results", type=Path, help="the run's results directory")
    keep.add_argument("--run", required=True, help="the command that made it, as the docs name it")
    keep.add_argument("--wall-s", type=float, required=True, help="its wall time in seconds")
    keep.add_argument("--note", default="", help="what else to know about the run (a sentence)")
    keep.add_argument("--json", type=Path, required=True)
    sub.add_parser("page", help="print docs/verdicts.md")
    args = parser.parse_args()
    if args.command == "record":
        args.json.write_text(json.dumps(record(args.results, args.run, args.wall_s, args.note), indent=1) + "\n")
    else:
        print(page(), end="")


if __name__ == "__main__":
    main()
