# Corpus preprocessing, scatter/gather: an inventory job checks the corpus and counts its documents,
# `shards` jobs tokenize disjoint document ranges (in parallel, locally or on a cluster), and a gather
# job concatenates them into train.bin / val.bin and writes meta.json.


rule corpus_inventory:
    """Check a corpus spec (source, path, tokenizer, dtype) and count its documents."""
    input:
        code=command_code("corpus-inventory"),
    output:
        "results/data/{corpus}/inventory.json",
    params:
        spec=corpus_json,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        CONDA_ENV
    log:
        "results/logs/data_{corpus}/inventory.log",
    benchmark:
        "results/benchmarks/data_{corpus}/inventory.tsv"
    shell:
        "python -m moe_rpo corpus-inventory {wildcards.corpus} --settings {params.spec:q} --out {output} > {log} 2>&1"


rule corpus_shard:
    """Tokenize one document range of a corpus."""
    input:
        inventory="results/data/{corpus}/inventory.json",
        code=command_code("corpus-shard"),
    output:
        train=temp("results/data/{corpus}/shards/{shard}.train.bin"),
        val=temp("results/data/{corpus}/shards/{shard}.val.bin"),
        counts=temp("results/data/{corpus}/shards/{shard}.json"),
    params:
        shards=lambda wc: config["corpora"][wc.corpus]["shards"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        CONDA_ENV
    log:
        "results/logs/data_{corpus}/shard{shard}.log",
    benchmark:
        "results/benchmarks/data_{corpus}/shard{shard}.tsv"
    shell:
        "python -m moe_rpo corpus-shard --inventory {input.inventory} --shards {params.shards} --shard {wildcards.shard} "
        "--out results/data/{wildcards.corpus}/shards/{wildcards.shard} > {log} 2>&1"


rule corpus_gather:
    """Concatenate a corpus's shards into train.bin / val.bin and write meta.json."""
    input:
        inventory="results/data/{corpus}/inventory.json",
        shards=lambda wc: [f"{prefix}.{part}" for prefix in corpus_shards(wc) for part in ("train.bin", "val.bin", "json")],
        code=command_code("corpus-gather"),
    output:
        train="results/data/{corpus}/train.bin",
        val="results/data/{corpus}/val.bin",
        meta="results/data/{corpus}/meta.json",
    params:
        prefixes=corpus_shards,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        CONDA_ENV
    log:
        "results/logs/data_{corpus}/gather.log",
    benchmark:
        "results/benchmarks/data_{corpus}/gather.tsv"
    shell:
        "python -m moe_rpo corpus-gather --inventory {input.inventory} --shards {params.prefixes} "
        "--out-dir results/data/{wildcards.corpus} > {log} 2>&1"
