"""The table of measured GPU speed, rendered from a JSON that benchmarks/gpu_check.py wrote (docs/performance.md
shows every such JSON of benchmarks/measured/ through it).

    python benchmarks/gpu_table.py benchmarks/measured/gpu_check_h200.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def render(check: dict) -> str:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", help="gpu_check.py's --json output")
    print(render(json.loads(Path(parser.parse_args().json).read_text())))


if __name__ == "__main__":
    main()
