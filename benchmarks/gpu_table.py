"""The README's table of measured GPU speed, rendered from a JSON that benchmarks/gpu_check.py wrote, and
written into the README between the markers that name that JSON.

    python benchmarks/gpu_table.py benchmarks/measured/gpu_check_h200.json            # print it
    python benchmarks/gpu_table.py benchmarks/measured/gpu_check_h200.json --readme README.md
"""
from __future__ import annotations

import argparse
import json
import re
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


def readme_block(readme: str, source: str) -> re.Match:
    """The table's place in the README: between <!-- gpu_table: SOURCE --> and <!-- end gpu_table -->."""
    match = re.search(rf"<!-- gpu_table: {re.escape(source)} -->\n(.*?)<!-- end gpu_table -->", readme, re.S)
    if match is None:
        raise SystemExit(f"the README has no '<!-- gpu_table: {source} -->' ... '<!-- end gpu_table -->' block")
    return match


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", help="gpu_check.py's --json output (as the README names it)")
    parser.add_argument("--readme", type=Path, help="write the table into this README's block for the JSON")
    args = parser.parse_args()
    table = render(json.loads(Path(args.json).read_text()))
    if args.readme is None:
        print(table)
        return
    readme = args.readme.read_text()
    block = readme_block(readme, args.json)
    args.readme.write_text(readme[:block.start(1)] + table + "\n" + readme[block.end(1):])


if __name__ == "__main__":
    main()
