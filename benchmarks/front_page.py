"""The README's claims checklist, rendered from the default run's measured claims (benchmarks/measured/), and its
figure, copied from a run's outputs. The checklist sits between `<!-- claims: FILE -->` and `<!-- end claims -->`.

    python benchmarks/front_page.py                 # rewrite the README's checklist from benchmarks/measured/
    python benchmarks/front_page.py --figures results   # also copy that run's figure into docs/img/
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "benchmarks/measured/claims_default_cpu.json"
FIGURE = "toy_routing_trajectories.png"  # the paper's first figure, as the default run draws it
BLOCK = re.compile(r"(<!-- claims: (?P<source>\S+) -->\n)(?P<body>.*?)(<!-- end claims -->)", re.S)
BADGE = {"reproduced": "✅ reproduced", "refuted": "❌ refuted", "inconclusive": "❔ inconclusive"}


def checklist(measured: dict) -> str:
    claims = measured["claims"]
    counts = ", ".join(f"{sum(c['verdict'] == v for c in claims)} {v}" for v in BADGE)
    lines = [f"The default run (`{measured['run']}`, {measured['wall_s'] / 60:.1f} minutes on {measured['machine']}, "
             f"{measured['date']}): {counts}.", "",
             "| claim | verdict | measured (mean, 95% interval, seeds) |", "| --- | --- | --- |"]
    for claim in claims:
        measured_text = claim.get("explanation") or claim["reason"]
        lines.append(f"| {claim['claim']} | {BADGE[claim['verdict']]} | {measured_text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def rendered(readme: str) -> str:
    """The README with its checklist block rendered again from the file the block names."""
    match = BLOCK.search(readme)
    if match is None:
        raise SystemExit("the README has no '<!-- claims: FILE -->' ... '<!-- end claims -->' block")
    body = checklist(json.loads((ROOT / match["source"]).read_text()))
    return readme[:match.start("body")] + body + readme[match.end("body"):]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figures", type=Path, help="a run's results directory, whose figure to copy")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    readme.write_text(rendered(readme.read_text()))
    if args.figures:
        shutil.copyfile(args.figures / "figures" / FIGURE, ROOT / "docs" / "img" / FIGURE)


if __name__ == "__main__":
    main()
