"""Read a prepared corpus: `train.bin` / `val.bin` as numpy.memmap, checked against `meta.json` first."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from moe_rpo.data.sources import CorpusError

FULL_CHECK_BYTES = 1 << 30  # checksum and id range are verified in full up to this size


DTYPES = ("uint8", "uint16", "uint32")
SPLIT_KEYS = ("file", "tokens", "sha256")


def read_meta(corpus_dir: str | Path) -> dict:
    """meta.json of a prepared corpus, checked for the keys the readers use."""
    path = Path(corpus_dir) / "meta.json"
    if not path.is_file():
        raise CorpusError(f"no prepared corpus at {corpus_dir}: {path} is missing (run the corpus rules first)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path} is not valid JSON ({error}); prepare the corpus again") from None
    problem = None
    if not isinstance(meta, dict) or not isinstance(meta.get("splits"), dict):
        problem = "it has no 'splits' mapping"
    elif meta.get("dtype") not in DTYPES:
        problem = f"dtype {meta.get('dtype')!r} is not one of {list(DTYPES)}"
    elif not isinstance(meta.get("vocab_size"), int) or meta["vocab_size"] < 1:
        problem = f"vocab_size {meta.get('vocab_size')!r} is not a positive integer"
    else:
        for split, info in meta["splits"].items():
            if not isinstance(info, dict) or any(key not in info for key in SPLIT_KEYS):
                problem = f"splits.{split} lacks one of {list(SPLIT_KEYS)}"
    if problem:
        raise CorpusError(f"{path}: {problem}; prepare the corpus again")
    return meta


def corpus_identity(corpus_dir: str | Path) -> dict[str, str]:
    """The sha256 of each split (from meta.json): part of a training checkpoint's fingerprint, so that a
    checkpoint made on other data (another corpus, another split_seed) is never resumed."""
    return {split: info["sha256"] for split, info in sorted(read_meta(corpus_dir)["splits"].items())}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def open_tokens(corpus_dir: str | Path, split: str, full_check_bytes: int = FULL_CHECK_BYTES) -> np.memmap:
    """The split's token ids as a read-only memmap. Refuses a file whose size, checksum or id range
    disagrees with meta.json (checksum and ids are checked when the file is at most full_check_bytes)."""
    meta = read_meta(corpus_dir)
    if split not in meta["splits"]:
        raise CorpusError(f"{corpus_dir} has no split {split!r} (splits: {sorted(meta['splits'])})")
    info, dtype = meta["splits"][split], np.dtype(meta["dtype"])
    path = Path(corpus_dir) / info["file"]
    if not path.is_file():
        raise CorpusError(f"token file missing: {path}")
    size, expected = path.stat().st_size, info["tokens"] * dtype.itemsize
    if size != expected:
        raise CorpusError(f"{path} is {size} bytes but meta.json says {info['tokens']} {dtype} tokens "
                          f"({expected} bytes): the file is truncated or corrupt; prepare the corpus again")
    if size <= full_check_bytes:
        if sha256_file(path) != info["sha256"]:
            raise CorpusError(f"{path} does not match the sha256 in meta.json: the file is corrupt; "
                              f"prepare the corpus again")
    tokens = np.memmap(path, dtype=dtype, mode="r")
    if size <= full_check_bytes and len(tokens) and int(tokens.max()) >= meta["vocab_size"]:
        raise CorpusError(f"{path} holds id {int(tokens.max())}, outside the vocabulary of {meta['vocab_size']}")
    return tokens
