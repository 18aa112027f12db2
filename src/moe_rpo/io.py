"""Atomic file writes, so that a killed job never leaves a complete-looking partial output; records hold
finite numbers only, and a record that cannot be read is named."""
from __future__ import annotations

import contextlib
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp"):
    """Yield a temporary path beside `path` to write to; it becomes `path` only once the block completes, so a
    killed job never leaves a complete-looking partial file. (`suffix`: numpy insists on its own ending.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + suffix)
    yield tmp
    os.replace(tmp, path)


def non_finite(data, where: str = "") -> str | None:
    """The key path of the first NaN or infinite number in `data` (nested dicts and lists), or None."""
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, (list, tuple)):
        items = enumerate(data)
    else:
        is_number = isinstance(data, (float, np.floating)) and not isinstance(data, bool)
        return (where or "<top level>") if is_number and not math.isfinite(data) else None
    for key, value in items:
        found = non_finite(value, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def write_json(path: str | Path, data) -> None:
    """Write `data` as JSON; refuse NaN and infinities (a diverged number must never reach a record)."""
    path = Path(path)
    bad = non_finite(data)
    if bad:
        raise FloatingPointError(f"refusing to write {path}: {bad} is not a finite number")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=float, allow_nan=False) + "\n")


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path, ".tmp.npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def read_json(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing result file: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON (truncated or corrupt: {error}); delete it and rerun, "
                         f"and the job that writes it runs again") from None


def unreadable(path: str | Path) -> str | None:
    """Why a finished output cannot be read back (a JSON record that does not parse, a .pt or .npz archive
    whose zip directory is gone), or None. Cheap: a model is not loaded, only its archive opened."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            read_json(path)
        elif path.suffix in (".pt", ".npz"):
            zipfile.ZipFile(path).close()
    except (ValueError, zipfile.BadZipFile, OSError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return f"{type(error).__name__}: {error}"
    return None


def set_aside_unreadable(paths) -> list[str]:
    """Rename every existing output in `paths` that cannot be read back to NAME.corrupt, so that the
    workflow remakes it instead of failing on it in every later job; returns one message per file."""
    messages = []
    for path in map(Path, paths):
        problem = path.is_file() and unreadable(path)
        if problem:
            os.replace(path, path.with_name(path.name + ".corrupt"))
            messages.append(f"{path} cannot be read ({problem}): moved to {path.name}.corrupt, it will be made again")
    return messages
