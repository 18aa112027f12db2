# Corpus preprocessing, scatter/gather: an inventory job checks the corpus and counts its documents,
# `shards` jobs tokenize disjoint document ranges (in parallel, locally or on a cluster), and a gather
# job concatenates them into train.bin / val.bin and writes meta.json.


rule corpus_inventory:
    """Check a corpus spec (source, path, tokenizer, dtype) and count its documents."""
    input:
        code=code_of(job_kinds.CORPUS_INVENTORY.command),
    output:
        paths.record(job_kinds.CORPUS_INVENTORY.files),
    params:
        spec=job_settings(job_kinds.CORPUS_INVENTORY),
    threads: 1
    priority: 20  # upstream of base_model, the critical path
    conda:
        CONDA_ENV
    log:
        paths.log(job_kinds.CORPUS_INVENTORY.files["key"]),
    benchmark:
        paths.benchmark(job_kinds.CORPUS_INVENTORY.files["key"])
    shell:
        "python -m moe_rpo corpus-inventory {wildcards.corpus:q} --settings {params.spec:q} --out {output:q} > {log:q} 2>&1"


rule corpus_shard:
    """Tokenize one document range of a corpus."""
    input:
        inventory=rules.corpus_inventory.output[0],
        code=code_of("corpus-shard"),
    output:
        train=temp(f"{CORPUS_DIR}/shards/{{shard}}.train.bin"),
        val=temp(f"{CORPUS_DIR}/shards/{{shard}}.val.bin"),
        counts=temp(f"{CORPUS_DIR}/shards/{{shard}}.json"),
    params:
        shards=lambda wc: config["corpora"][wc.corpus]["shards"],
        prefix=lambda wc, output: output.counts.removesuffix(".json"),
    threads: 1
    priority: 20  # upstream of base_model, the critical path
    conda:
        CONDA_ENV
    log:
        paths.log("data_{corpus}/shard{shard}"),
    benchmark:
        paths.benchmark("data_{corpus}/shard{shard}")
    shell:
        "python -m moe_rpo corpus-shard --inventory {input.inventory:q} --shards {params.shards:q} --shard {wildcards.shard:q} "
        "--out {params.prefix:q} > {log:q} 2>&1"


rule corpus_gather:
    """Concatenate a corpus's shards into train.bin / val.bin and write meta.json."""
    input:
        inventory=rules.corpus_inventory.output[0],
        shards=lambda wc: [f"{prefix}.{part}" for prefix in corpus_shards(wc) for part in ("train.bin", "val.bin", "json")],
        code=code_of("corpus-gather"),
    output:
        train=f"{CORPUS_DIR}/train.bin",
        val=f"{CORPUS_DIR}/val.bin",
        meta=f"{CORPUS_DIR}/meta.json",
    params:
        prefixes=corpus_shards,
        out_dir=lambda wc, output: os.path.dirname(output.meta),
    threads: 1
    priority: 20  # upstream of base_model, the critical path
    conda:
        CONDA_ENV
    log:
        paths.log("data_{corpus}/gather"),
    benchmark:
        paths.benchmark("data_{corpus}/gather")
    shell:
        "python -m moe_rpo corpus-gather --inventory {input.inventory:q} --shards {params.prefixes:q} "
        "--out-dir {params.out_dir:q} > {log:q} 2>&1"
