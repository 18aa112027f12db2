"""Corpus preprocessing: text documents -> tokenizer ids in `train.bin` / `val.bin` (read with numpy.memmap).

inventory (count documents; char vocabulary) -> N shard jobs (tokenize disjoint document ranges)
-> gather (concatenate in order, write meta.json with counts and checksums). Readers check a bin
against its meta.json before use (tokens.py).
"""
