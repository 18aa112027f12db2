"""The tables of GPU measurements, rendered from the JSONs that benchmarks/gpu_check.py, nanogpt_peer.py, paper_dag.py
and gpu_hours.py write (docs/performance.md shows each such JSON of benchmarks/measured/ through these).

    python benchmarks/gpu_table.py benchmarks/measured/gpu_check_h200.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def render_check(check: dict) -> str:
    peak = check["peak_tflops"]
    determinism = check["determinism"]
    lines = [f"Measured on one {peak['name']} (torch {check['torch']}, bf16 autocast, deterministic kernels; MFU "
             f"against the datasheet's {peak['datasheet_bf16']} TFLOP/s, a {peak['measured_n']}-cube matmul ran at "
             f"{peak['measured_matmul']:.0f}) by `benchmarks/gpu_check.py`; two identical runs bit-equal: "
             f"{determinism['bit_equal']}.",
             "",
             "| model | batch × context | step | ms/step | tokens/s | MFU | × iso-active dense |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for row in check["speed"]:
        ratio = row.get("tokens_per_s_over_iso_active_dense")
        lines.append(f"| {row['size']} {row['model']} ({row['active_params_m']:.0f}M active of {row['params_m']:.0f}M) "
                     f"| {row['batch']} × {row['block_size']} | {'compiled' if row['compiled'] else 'eager'} "
                     f"| {row['ms_per_step']:.1f} | {row['tokens_per_s']:,.0f} | {row['mfu']:.1%} "
                     f"| {'' if ratio is None else f'{ratio:.2f}'} |")
    return "\n".join(lines)


def render_peer(peer: dict) -> str:
    """benchmarks/nanogpt_peer.py's rows: each model's step beside nanoGPT's (dense) or its iso-active dense GPT."""
    peak = peer["peak_tflops"]
    shape = peer["shape"]
    lines = [f"Measured on one {peak['name']} (torch {peer['torch']}) by `benchmarks/nanogpt_peer.py`: {shape['n_layer']} "
             f"layers of width {shape['n_embd']}, batch {shape['batch']} × {shape['block_size']}, bf16 autocast on a GPU, "
             "training steps (forward, backward, clipping, "
             f"AdamW), the median of interleaved repeats; MFU against the datasheet's {peak['datasheet_bf16']} TFLOP/s. "
             "nanoGPT's `model.py` was read from its checkout (sha256 "
             f"`{peer['nanogpt_model_sha256'][:12]}`)."
             + (f" Compiled with torch.compile's `{backend}` backend, not inductor."
                if (backend := peer.get("compile_backend", "inductor")) != "inductor" else ""), "",
             "| part | model | step | deterministic kernels | ms/step | tokens/s | MFU | × |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | --- |"]
    for row in peer["rows"]:
        if "error" in row:
            lines.append(f"| {row['part']} | {row['model']} | {row['compile']} | | failed: {row['error']} | | | |")
            continue
        ratio = f"{row['ratio']:.2f} of {row['over']}" if "ratio" in row else ""
        lines.append(f"| {row['part']} | {row['model']} | {row['compile']} | {'yes' if row['deterministic_kernels'] else 'no'} "
                     f"| {row['ms_per_step']:.1f} | {row['tokens_per_s']:,.0f} | {row['mfu']:.1%} | {ratio} |")
    lines += [f"\nNot measured: {'; '.join(peer['skipped'])}."] if peer["skipped"] else []
    return "\n".join(lines)


def render_dag(dag: dict) -> str:
    """benchmarks/paper_dag.py's run: each GPU rule's jobs and their wall times at the cut step count."""
    scope = "one job of each GPU rule" if dag["one_per_rule"] else "every GPU job"
    lines = [f"The paper configuration's {scope} ({'every seed' if dag['all_seeds'] else 'first seeds'}, "
             f"{dag['steps']} training steps each{', tiny shapes' if dag['tiny'] else ''}) ran through Snakemake on "
             f"one {dag['device']} (torch {dag['torch']}) in {dag['wall_s'] / 60:.1f} minutes, by "
             "`benchmarks/paper_dag.py`.", "",
             "| rule | jobs in the configuration | jobs run | job-seconds | longest job (s) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for rule, row in dag["rules"].items():
        lines.append(f"| `{rule}` | {dag['jobs_in_config'][rule]} | {row['jobs']} | {sum(row['job_s']):.0f} "
                     f"| {max(row['job_s']):.0f} |")
    return "\n".join(lines)


def render_hours(hours: dict) -> str:
    """benchmarks/gpu_hours.py's estimate: each rule's GPU-hours at full steps, from measured steps and evaluations."""
    lines = [f"GPU-hours of the paper configuration at its full step counts on one {hours['device']} (torch "
             f"{hours['torch']}), by `benchmarks/gpu_hours.py`: each job kind's training step and evaluation timed "
             f"({hours['steps'][0]} and {hours['steps'][1]} steps), times its steps and evaluations.", "",
             "| rule | GPU-hours |", "| --- | ---: |"]
    for rule, value in (hours["hours_by_rule"] or {}).items():
        lines.append(f"| `{rule}` | {value:.1f} |")
    lines.append(f"| all | {sum((hours['hours_by_rule'] or {}).values()):.1f} |")
    return "\n".join(lines)


RENDERERS = {"gpu_check": render_check, "nanogpt_peer": render_peer, "paper_dag": render_dag, "gpu_hours": render_hours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=Path, help="a --json output of one of the scripts, named <script>_<device>.json")
    path = parser.parse_args().json
    print(RENDERERS[path.stem.rsplit("_", 1)[0]](json.loads(path.read_text())))


if __name__ == "__main__":
    main()
