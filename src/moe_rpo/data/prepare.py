"""The three preprocessing steps: inventory (checks and counts, before any work), shard (tokenize one
document range into its own train/val files) and gather (concatenate the shards, write meta.json).

Each document's split depends only on its index and the split seed, and each document is followed by
the end-of-text token, so the gathered bins are identical for any number of shards.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from moe_rpo.data.sources import CorpusError, count_documents, read_documents
from moe_rpo.data.tokenizers import TOKENIZERS, build_tokenizer, check_dtype
from moe_rpo.io import read_json, write_json

SPLITS = ("train", "val")
FLUSH_TOKENS = 1 << 20
COPY_BYTES = 1 << 24


def is_validation(index: int, seed: int, fraction: float) -> bool:
    """A fixed pseudo-random split by document index, independent of sharding and streaming."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def shard_range(documents: int, shards: int, shard: int) -> tuple[int, int]:
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in [0, {shards})")
    return documents * shard // shards, documents * (shard + 1) // shards


def progress(iterable, **kwargs):
    """A progress bar that also reads well in a log file (fewer updates when stderr is not a terminal)."""
    return tqdm(iterable, mininterval=0.5 if sys.stderr.isatty() else 15, file=sys.stderr, **kwargs)


def inventory(spec: dict) -> dict:
    """Check the corpus spec and count its documents (and, for the char tokenizer, collect its
    characters) before any tokenizing: a bad source, path, tokenizer or dtype fails here."""
    if spec["tokenizer"] not in TOKENIZERS:
        raise CorpusError(f"unknown tokenizer {spec['tokenizer']!r}; choose one of {list(TOKENIZERS)}")
    np.dtype(spec["dtype"])
    documents, layout = count_documents(spec)
    chars = None
    if spec["tokenizer"] == "char":
        seen = set()
        for doc in progress(read_documents(spec, layout, 0, documents), total=documents, desc="characters"):
            if doc.text.strip():
                seen.update(doc.text)
        chars = "".join(sorted(seen))
        if not chars:
            raise CorpusError("the corpus has no text: every document is empty")
    tokenizer = build_tokenizer(spec["tokenizer"], chars)
    check_dtype(tokenizer.vocab_size, spec["dtype"])
    return {"spec": spec, "documents": documents, "layout": layout, "tokenizer": tokenizer.metadata()}


class TokenWriter:
    """Appends token ids to a file in chunks, so memory stays bounded by FLUSH_TOKENS; keeps the file's sha256."""

    def __init__(self, path: Path, dtype: str):
        self.path, self.dtype, self.tokens = path, np.dtype(dtype), 0
        self.digest = hashlib.sha256()
        self._buffer: list[int] = []
        self._file = path.open("wb")

    def append(self, ids: list[int]) -> None:
        self._buffer.extend(ids)
        if len(self._buffer) >= FLUSH_TOKENS:
            self.flush()

    def flush(self) -> None:
        data = np.asarray(self._buffer, dtype=self.dtype).tobytes()
        self._file.write(data)
        self.digest.update(data)
        self.tokens += len(self._buffer)
        self._buffer = []

    def close(self) -> None:
        self.flush()
        self._file.close()


def tokenize_shard(inventory_record: dict, shards: int, shard: int, out_prefix: str | Path) -> dict:
    """Tokenize one shard's documents into PREFIX.train.bin / PREFIX.val.bin; write PREFIX.json (counts)."""
    spec, layout = inventory_record["spec"], inventory_record["layout"]
    tokenizer = build_tokenizer(spec["tokenizer"], inventory_record["tokenizer"].get("chars"))
    start, stop = shard_range(inventory_record["documents"], shards, shard)
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    partial = {split: out_prefix.with_name(f"{out_prefix.name}.{split}.bin.partial") for split in SPLITS}
    writers = {split: TokenWriter(path, spec["dtype"]) for split, path in partial.items()}
    counts = {"shard": shard, "start": start, "stop": stop, "empty_documents": 0, "invalid_utf8_sequences": 0,
              "documents": {split: 0 for split in SPLITS}}
    documents = read_documents(spec, layout, start, stop)
    for doc in progress(documents, total=stop - start, desc=f"shard {shard}/{shards}", unit="doc"):
        counts["invalid_utf8_sequences"] += doc.invalid_bytes
        if not doc.text.strip():
            counts["empty_documents"] += 1
            continue
        split = "val" if is_validation(doc.index, spec["split_seed"], spec["val_fraction"]) else "train"
        writers[split].append(tokenizer.encode(doc.text) + [tokenizer.eot])
        counts["documents"][split] += 1
    for writer in writers.values():
        writer.close()
    counts["tokens"] = {split: writer.tokens for split, writer in writers.items()}
    counts["sha256"] = {split: writer.digest.hexdigest() for split, writer in writers.items()}  # checked by gather
    for split, path in partial.items():
        os.replace(path, out_prefix.with_name(f"{out_prefix.name}.{split}.bin"))
    write_json(out_prefix.with_suffix(".json"), counts)
    return counts


def gather(inventory_record: dict, shard_prefixes: list[str | Path], out_dir: str | Path) -> dict:
    """Concatenate the shards' bins in shard order into OUT/train.bin and OUT/val.bin; write OUT/meta.json."""
    spec = inventory_record["spec"]
    itemsize = np.dtype(spec["dtype"]).itemsize
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shard_counts = [read_json(Path(prefix).with_suffix(".json")) for prefix in shard_prefixes]
    if [c["shard"] for c in shard_counts] != list(range(len(shard_counts))):
        raise CorpusError(f"shards must be given in order 0..{len(shard_counts) - 1}")
    splits = {}
    for split in SPLITS:
        digest, target = hashlib.sha256(), out_dir / f"{split}.bin.partial"
        with target.open("wb") as out:
            for prefix, counts in zip(shard_prefixes, shard_counts):
                path = Path(prefix).with_name(f"{Path(prefix).name}.{split}.bin")
                expected = counts["tokens"][split] * itemsize
                if not path.is_file() or path.stat().st_size != expected:
                    size = path.stat().st_size if path.is_file() else "missing"
                    raise CorpusError(f"shard file {path} is {size} bytes, its record says {expected}: rerun the shard")
                shard_digest = hashlib.sha256()
                with path.open("rb") as part:
                    while chunk := part.read(COPY_BYTES):
                        digest.update(chunk)
                        shard_digest.update(chunk)
                        out.write(chunk)
                if shard_digest.hexdigest() != counts["sha256"][split]:
                    target.unlink()
                    raise CorpusError(f"shard file {path} does not match the sha256 in its record: the file is "
                                      f"corrupt; rerun the shard")
        tokens = sum(c["tokens"][split] for c in shard_counts)
        if tokens == 0:
            target.unlink()
            raise CorpusError(f"the {split} split is empty ({sum(c['empty_documents'] for c in shard_counts)} "
                              f"empty documents skipped); check the corpus and val_fraction={spec['val_fraction']}")
        os.replace(target, out_dir / f"{split}.bin")
        splits[split] = {"file": f"{split}.bin", "tokens": tokens, "bytes": tokens * itemsize,
                         "documents": sum(c["documents"][split] for c in shard_counts),
                         "sha256": digest.hexdigest()}
    tokenizer = inventory_record["tokenizer"]
    meta = {"source": spec["source"], "spec": spec, "tokenizer": tokenizer["name"],
            "vocab_size": tokenizer["vocab_size"], "eot": tokenizer["eot"], "dtype": spec["dtype"],
            "tokenizer_details": tokenizer, "documents": inventory_record["documents"],
            "empty_documents": sum(c["empty_documents"] for c in shard_counts),
            "invalid_utf8_sequences": sum(c["invalid_utf8_sequences"] for c in shard_counts),
            "shards": len(shard_counts), "splits": splits}
    write_json(out_dir / "meta.json", meta)
    return meta


def prepare_corpus(spec: dict, out_dir: str | Path, shards: int | None = None) -> dict:
    """All three steps in one process (what the rules run as separate jobs); returns meta.json's content."""
    record = inventory(spec)
    count = shards or spec["shards"]
    prefixes = [Path(out_dir) / "shards" / str(shard) for shard in range(count)]
    for shard, prefix in enumerate(prefixes):
        tokenize_shard(record, count, shard, prefix)
    return gather(record, prefixes, out_dir)
