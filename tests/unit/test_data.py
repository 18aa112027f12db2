"""Corpus preprocessing: sources, tokenizers, shard/gather equivalence and every refused input."""
import json
import lzma
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from moe_rpo import config as cfg
from moe_rpo import schema, values
from moe_rpo.data import shakespeare
from moe_rpo.data.prepare import (
    gather,
    inventory,
    is_validation,
    prepare_corpus,
    shard_range,
    tokenize_shard,
)
from moe_rpo.data.sources import CorpusError, decode_utf8, read_documents
from moe_rpo.data.tokenizers import CharTokenizer, build_tokenizer, gpt2_files
from moe_rpo.data.tokens import open_tokens, read_meta

DOCS = ["First document.\nWith two lines.", "Second, with ünïcödé — and 日本語.", "Third one!", "Fourth: short",
        "Fifth document is here.", "Sixth and last."]


def spec(source, **options):
    """A corpus spec with the schema's defaults filled in."""
    return schema.validate_definition({"source": source, **options}, "corpus_spec")


def decoded_documents(out_dir):
    """The documents of both splits, decoded back to text (split at the end-of-text token)."""
    meta = read_meta(out_dir)
    tokenizer = build_tokenizer(meta["tokenizer"], meta["tokenizer_details"].get("chars"))
    docs = []
    for split in ("train", "val"):
        ids = np.asarray(open_tokens(out_dir, split))
        assert ids[-1] == meta["eot"]
        cuts = np.flatnonzero(ids == meta["eot"])
        docs += [tokenizer.decode(part) for part in np.split(ids, cuts + 1)[:-1] for part in [part[:-1]]]
    return docs


# ---- sources ------------------------------------------------------------------------------------

def test_shakespeare_scenes_are_plain_text():
    scenes = shakespeare.documents("scene")
    plays = shakespeare.documents("play")
    assert len(plays) == len(shakespeare.play_files()) >= 37
    assert len(scenes) > 700
    text = "".join(scenes)
    assert "**" not in text and "\\" not in text and " \n" not in text
    assert "HAMLET:\nTo be, or not to be: that is the question:" in text
    assert sum(map(len, plays)) == pytest.approx(sum(map(len, scenes)), rel=0.01)


def test_shakespeare_markdown_cleaning():
    md = "# Play\n\n## ACT I\n\n### SCENE I. A room.\n\n_Enter ROMEO_\n\n**ROMEO**  \nHe jests at scars\\--  \n"
    assert shakespeare.sections(md) == ["SCENE I. A room.\n\nEnter ROMEO\n\nROMEO:\nHe jests at scars--\n"]


def test_split_is_deterministic_and_near_the_fraction():
    flags = [is_validation(i, 7, 0.1) for i in range(20000)]
    assert flags == [is_validation(i, 7, 0.1) for i in range(20000)]
    assert 0.09 < np.mean(flags) < 0.11
    assert flags != [is_validation(i, 8, 0.1) for i in range(20000)]


def test_shard_ranges_cover_every_document_once():
    for documents, shards in [(10, 3), (3, 5), (783, 2)]:
        ranges = [shard_range(documents, shards, i) for i in range(shards)]
        covered = [i for start, stop in ranges for i in range(start, stop)]
        assert covered == list(range(documents))


def write_local_fixture(root: Path) -> list[str]:
    """DOCS spread over .txt, .jsonl, .parquet and OpenWebText-style .xz files; returns the expected order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True)
    (root / "a.txt").write_text(DOCS[0], encoding="utf-8")
    (root / "b.jsonl").write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(DOCS[1:3])) + "\n\n")
    pq.write_table(pa.table({"text": [DOCS[3]]}), root / "c.parquet")
    with tarfile.open(root / "d.xz", "w:xz") as archive:  # the original OpenWebText: a tar of .txt files
        for name, text in [("0002.txt", DOCS[5]), ("0001.txt", DOCS[4])]:
            path = root / name
            path.write_text(text)
            archive.add(path, arcname=name)
            path.unlink()
    (root / "notes.md").write_text("ignored: not a corpus format")
    return [DOCS[0], DOCS[1], DOCS[2], DOCS[3], DOCS[4], DOCS[5]]


def test_local_source_reads_every_format_in_order(tmp_path):
    expected = write_local_fixture(tmp_path / "corpus")
    corpus = spec("local", path=str(tmp_path / "corpus"), val_fraction=0.5)
    record = inventory(corpus)
    assert record["documents"] == 6
    texts = [doc.text for doc in read_documents(corpus, record["layout"], 0, 6)]
    assert texts == expected
    assert [doc.text for doc in read_documents(corpus, record["layout"], 2, 5)] == expected[2:5]
    meta = prepare_corpus(corpus, tmp_path / "out")
    assert sorted(decoded_documents(tmp_path / "out")) == sorted(expected)
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == 6


def test_plain_xz_file_is_one_document(tmp_path):
    (tmp_path / "docs").mkdir()
    with lzma.open(tmp_path / "docs" / "one.xz", "wt") as handle:
        handle.write("a single compressed document")
    corpus = spec("local", path=str(tmp_path / "docs"))
    record = inventory(corpus)
    assert [d.text for d in read_documents(corpus, record["layout"], 0, 1)] == ["a single compressed document"]


def write_hf_fixture(root: Path, kind: str) -> None:
    """A small corpus in OpenWebText's format (a 'text' column), as Parquet or JSON-lines files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True)
    halves = [DOCS[:3], DOCS[3:]]
    for i, texts in enumerate(halves):
        if kind == "parquet":
            pq.write_table(pa.table({"text": texts}), root / f"train-{i:05d}-of-00002.parquet")
        else:
            (root / f"train-{i:05d}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


@pytest.mark.parametrize("kind,streaming", [("parquet", False), ("parquet", True), ("json", False)])
def test_openwebtext_source_through_datasets(tmp_path, kind, streaming):
    write_hf_fixture(tmp_path / "owt", kind)
    pattern = str(tmp_path / "owt" / ("*.parquet" if kind == "parquet" else "*.jsonl"))
    corpus = spec("openwebtext", dataset=kind, data_files=pattern, revision=None, streaming=streaming,
                  cache_dir=str(tmp_path / "cache"), max_documents=5, val_fraction=0.5)
    record = inventory(corpus)
    assert record["documents"] == 5
    assert [d.text for d in read_documents(corpus, record["layout"], 1, 4)] == DOCS[1:4]
    prepare_corpus(corpus, tmp_path / "out", shards=2)
    assert sorted(decoded_documents(tmp_path / "out")) == sorted(DOCS[:5])


def test_openwebtext_source_from_a_local_directory(tmp_path):
    write_hf_fixture(tmp_path / "owt", "parquet")
    corpus = spec("openwebtext", dataset=str(tmp_path / "owt"), revision=None, cache_dir=str(tmp_path / "cache"))
    assert inventory(corpus)["documents"] == len(DOCS)


def test_hub_dataset_offline_fails_with_a_clear_error(tmp_path, monkeypatch):
    corpus = spec("openwebtext", cache_dir=str(tmp_path / "cache"))  # Skylion007/openwebtext, not cached
    with pytest.raises(CorpusError, match="Skylion007/openwebtext.*HF_HUB_OFFLINE"):
        inventory(corpus)


def test_missing_text_column_is_named(tmp_path):
    write_hf_fixture(tmp_path / "owt", "parquet")
    corpus = spec("openwebtext", dataset="parquet", data_files=str(tmp_path / "owt" / "*.parquet"), revision=None,
                  cache_dir=str(tmp_path / "cache"), text_column="body")
    with pytest.raises(CorpusError, match="no column 'body'"):
        inventory(corpus)


# ---- tokenizers ---------------------------------------------------------------------------------

def test_gpt2_ids_match_transformers_tokenizer_built_from_the_same_files():
    from transformers import GPT2Tokenizer

    files = gpt2_files()
    vocab = json.loads(files["encoder.json"].read_text(encoding="utf-8"))
    merges = [tuple(line.split()) for line in files["vocab.bpe"].read_text(encoding="utf-8").split("\n")[1:] if line]
    reference = GPT2Tokenizer(vocab=vocab, merges=merges)
    assert len(reference) == 50257
    ours = build_tokenizer("gpt2")
    texts = shakespeare.documents("scene")[:40] + DOCS + ["  leading spaces\n\n\ttabs", "emoji 🤖 and numbers 123456",
                                                          "it's don't we'll they've I'M", "\u00a0nbsp and\r\nCRLF"]
    for text in texts:
        assert ours.encode(text) == reference.encode(text)
        assert ours.decode(ours.encode(text)) == text
    assert ours.eot == reference.convert_tokens_to_ids("<|endoftext|>") == 50256


def test_gpt2_treats_special_token_text_in_a_document_as_ordinary_text():
    ids = build_tokenizer("gpt2").encode("a <|endoftext|> b")
    assert 50256 not in ids


def test_char_tokenizer_round_trip_and_end_of_text():
    tokenizer = CharTokenizer("hello world")
    assert tokenizer.vocab_size == len(set("hello world")) + 1
    ids = tokenizer.encode("hello") + [tokenizer.eot]
    assert tokenizer.decode(ids) == "hello<|endoftext|>"
    with pytest.raises(ValueError, match="'z' is not in the char vocabulary"):
        tokenizer.encode("z")


def test_char_corpus_saves_its_vocabulary(tmp_path):
    meta = prepare_corpus(spec("shakespeare", tokenizer="char", dtype="uint8", max_documents=20, val_fraction=0.3), tmp_path / "out")
    chars = meta["tokenizer_details"]["chars"]
    assert meta["vocab_size"] == len(chars) + 1 and "H" in chars and "\n" in chars
    assert np.asarray(open_tokens(tmp_path / "out", "train")).max() == len(chars)  # the end-of-text id
    assert sorted(decoded_documents(tmp_path / "out")) == sorted(shakespeare.documents("scene")[:20])


# ---- scale: shard/gather equivalence ------------------------------------------------------------

@pytest.mark.parametrize("tokenizer", ["gpt2", "char"])
def test_one_and_many_shards_give_identical_bins(tmp_path, tokenizer):
    corpus = spec("shakespeare", tokenizer=tokenizer, max_documents=60)
    metas = {shards: prepare_corpus(corpus, tmp_path / f"s{shards}", shards=shards) for shards in (1, 4, 7)}
    for split in ("train", "val"):
        reference = (tmp_path / "s1" / f"{split}.bin").read_bytes()
        assert len(reference) > 0
        for shards in (4, 7):
            assert (tmp_path / f"s{shards}" / f"{split}.bin").read_bytes() == reference
            assert metas[shards]["splits"][split] == metas[1]["splits"][split]


def test_nanogpt_style_layout(tmp_path):
    """uint16 GPT-2 ids, each document followed by <|endoftext|>, readable with numpy.memmap."""
    meta = prepare_corpus(spec("shakespeare", max_documents=10, val_fraction=0.3), tmp_path / "out")
    train = np.memmap(tmp_path / "out" / "train.bin", dtype=np.uint16, mode="r")
    assert meta["dtype"] == "uint16" and len(train) == meta["splits"]["train"]["tokens"]
    assert (train == 50256).sum() == meta["splits"]["train"]["documents"]


# ---- bad input ----------------------------------------------------------------------------------

def test_empty_documents_are_skipped_and_counted(tmp_path):
    (tmp_path / "docs").mkdir()
    for i, text in enumerate(["real text", "", "   \n ", "more text", "and more"]):
        (tmp_path / "docs" / f"{i}.txt").write_text(text)
    meta = prepare_corpus(spec("local", path=str(tmp_path / "docs"), val_fraction=0.5), tmp_path / "out", shards=2)
    assert meta["documents"] == 5 and meta["empty_documents"] == 2
    assert sorted(decoded_documents(tmp_path / "out")) == ["and more", "more text", "real text"]


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    assert decode_utf8(b"ok \xff\xfe end \xef\xbf\xbd") == ("ok \ufffd\ufffd end \ufffd", 2)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "bad.txt").write_bytes(b"caf\xe9 au lait")
    for i in range(4):
        (tmp_path / "docs" / f"good{i}.txt").write_text(f"valid text {i}")
    (tmp_path / "docs" / "bad.jsonl").write_bytes(b'{"text": "na\xefve"}\n{"text": "fine"}\n{"text": "good"}\n')
    meta = prepare_corpus(spec("local", path=str(tmp_path / "docs"), val_fraction=0.5), tmp_path / "out", shards=1)
    assert meta["invalid_utf8_sequences"] == 2
    assert "caf\ufffd au lait" in decoded_documents(tmp_path / "out")


def test_malformed_jsonl_names_file_and_line(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    corpus = spec("local", path=str(tmp_path / "docs"))
    record = inventory(corpus)
    with pytest.raises(CorpusError, match=r"x\.jsonl:2: not a JSON object"):
        tokenize_shard(record, 1, 0, tmp_path / "out" / "0")


@pytest.mark.parametrize("setup,message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "no .txt/.jsonl/.parquet/.xz files"),
    (lambda p: (p.mkdir(), (p / "x.jsonl").write_text("\n\n")), "has no documents"),
])
def test_missing_or_empty_local_corpus_fails_before_work(tmp_path, setup, message):
    setup(tmp_path / "docs")
    with pytest.raises(CorpusError, match=message):
        inventory(spec("local", path=str(tmp_path / "docs")))


def test_corpus_of_empty_documents_is_refused(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("  ")
    with pytest.raises(CorpusError, match="every document is empty"):
        inventory(spec("local", path=str(tmp_path / "docs"), tokenizer="char"))
    with pytest.raises(CorpusError, match="split is empty"):
        prepare_corpus(spec("local", path=str(tmp_path / "docs")), tmp_path / "out", shards=1)


def test_vocabulary_that_does_not_fit_the_dtype_fails_before_work():
    with pytest.raises(ValueError, match="50257 ids does not fit dtype uint8"):
        inventory(spec("shakespeare", dtype="uint8"))


@pytest.mark.parametrize("corpus,message", [
    ({"source": "web"}, "corpora.c.source: 'web' is not one of"),
    ({"source": "shakespeare", "tokenizer": "bpe"}, "corpora.c.tokenizer: 'bpe' is not one of"),
    ({"source": "local"}, "'path' is a required property"),
    ({"source": "shakespeare", "path": "/x"}, "'path' is not one of"),
    ({"source": "shakespeare", "val_fraction": 1.5}, "val_fraction"),
])
def test_bad_corpus_config_is_named(corpus, message):
    with pytest.raises(values.ConfigError, match=message):
        cfg.validate({"corpora": {"c": corpus, "shakespeare_char": {"source": "shakespeare", "tokenizer": "char"}}})


def test_unknown_source_or_tokenizer_in_code_paths():
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe'"):
        build_tokenizer("bpe")
    with pytest.raises(CorpusError, match="unknown tokenizer"):
        inventory({"source": "shakespeare", "tokenizer": "bpe", "dtype": "uint16"})
    with pytest.raises(CorpusError, match="unknown corpus source 'web'"):
        inventory({"source": "web", "tokenizer": "gpt2", "dtype": "uint16", "max_documents": None})


# ---- readers check the bins against meta.json --------------------------------------------------

@pytest.fixture()
def prepared(tmp_path):
    prepare_corpus(spec("shakespeare", max_documents=12, val_fraction=0.3), tmp_path / "out")
    return tmp_path / "out"


def test_reader_accepts_a_good_corpus(prepared):
    tokens = open_tokens(prepared, "val")
    assert isinstance(tokens, np.memmap) and len(tokens) == read_meta(prepared)["splits"]["val"]["tokens"]


def test_reader_refuses_a_truncated_file(prepared):
    path = prepared / "train.bin"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(CorpusError, match="truncated or corrupt"):
        open_tokens(prepared, "train")


def test_reader_refuses_a_corrupt_file(prepared):
    path = prepared / "train.bin"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorpusError, match="does not match the sha256"):
        open_tokens(prepared, "train")
    open_tokens(prepared, "train", full_check_bytes=0)  # large files: only the size is checked


def test_reader_refuses_ids_outside_the_vocabulary(prepared):
    meta = read_meta(prepared)
    meta["vocab_size"] = 1000
    (prepared / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorpusError, match="outside the vocabulary of 1000"):
        open_tokens(prepared, "train")


def test_reader_refuses_missing_meta_or_bin(prepared):
    (prepared / "val.bin").unlink()
    with pytest.raises(CorpusError, match="token file missing"):
        open_tokens(prepared, "val")
    (prepared / "meta.json").unlink()
    with pytest.raises(CorpusError, match="meta.json is missing"):
        open_tokens(prepared, "train")


def test_gather_refuses_a_shard_that_disagrees_with_its_record(tmp_path):
    corpus = spec("shakespeare", max_documents=6)
    record = inventory(corpus)
    prefix = tmp_path / "shards" / "0"
    tokenize_shard(record, 1, 0, prefix)
    shard_bin = tmp_path / "shards" / "0.train.bin"
    shard_bin.write_bytes(shard_bin.read_bytes()[:10])
    with pytest.raises(CorpusError, match="rerun the shard"):
        gather(record, [prefix], tmp_path / "out")
    assert not (tmp_path / "out" / "train.bin").exists()


def test_cli_prepares_a_corpus_and_reports_bad_paths(tmp_path):
    env = {"PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    good = json.dumps(spec("shakespeare", max_documents=8, shards=3, val_fraction=0.5))
    done = subprocess.run([sys.executable, "-m", "moe_rpo", "prepare", "x", "--settings", good,
                           "--out-dir", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert read_meta(tmp_path / "out")["shards"] == 3
    bad = json.dumps(spec("local", path=str(tmp_path / "nowhere")))
    failed = subprocess.run([sys.executable, "-m", "moe_rpo", "corpus-inventory", "x", "--settings", bad,
                             "--out", str(tmp_path / "inv.json")], capture_output=True, text=True, env=env)
    assert failed.returncode == 2
    assert "local corpus path does not exist" in failed.stderr
    assert not (tmp_path / "inv.json").exists()
