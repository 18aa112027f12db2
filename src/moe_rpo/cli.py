"""Command line of the pipeline: every Snakemake rule calls one of these commands, and each also runs
on its own, e.g. `moe-rpo toy routing --seed 0 --config config/config.yaml --out results/toy/routing/seed0`."""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
import time
from pathlib import Path

from moe_rpo import config as cfg
from moe_rpo.io import read_json, write_json, write_npz


def _settings(args, pick):
    """Settings from --settings (JSON, as Snakemake passes them) or picked from a --config file."""
    if args.settings is not None:
        return json.loads(args.settings)
    return pick(cfg.load(*args.config))


def _add_settings_args(parser, what):
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--settings", help=f"{what} as JSON (what the Snakemake rules pass)")
    group.add_argument("--config", nargs="+", default=["config/config.yaml"], metavar="YAML",
                       help="pipeline config files, each merged over the ones before as in `snakemake --configfile` "
                            "(default: %(default)s; e.g. config/config.yaml config/paper.yaml)")


def _add_training_args(parser, out_help, settings_what):
    """The arguments every training command shares: the prepared corpus, the output, threads and settings."""
    parser.add_argument("--corpus-dir", required=True,
                        help="prepared corpus (results/data/NAME: train.bin, val.bin, meta.json)")
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default: %(default)s)")
    _add_settings_args(parser, settings_what)


def _timed(step, *args):
    """Run a step and return (its result, provenance)."""
    from moe_rpo.provenance import provenance  # noqa: PLC0415

    started, clock = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    result = step(*args)
    return result, provenance(started, time.perf_counter() - clock)


def cmd_toy(args):
    """Run one toy experiment for one seed; write PREFIX.npz (arrays) and PREFIX.json (metrics, provenance)."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    settings = _settings(args, lambda c: cfg.experiment_settings(c, args.experiment))
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    module = importlib.import_module(f"moe_rpo.toy.{args.experiment}")
    (arrays, records), prov = _timed(module.run, settings, args.seed)
    out = Path(args.out)
    write_npz(out.with_suffix(".npz"), {**arrays, "__seed__": np.array(args.seed)})
    write_json(out.with_suffix(".json"), {"experiment": args.experiment, "seed": args.seed, "settings": settings,
                                          "records": records, "provenance": prov})


def cmd_corpus_inventory(args):
    """Check a corpus spec and count its documents (first preprocessing step; fails before any work)."""
    from moe_rpo.data.prepare import inventory  # noqa: PLC0415

    spec = _settings(args, lambda c: cfg.corpus_spec(c, args.corpus))
    record, prov = _timed(inventory, spec)
    write_json(args.out, {**record, "provenance": prov})
    print(f"{args.corpus}: {record['documents']} documents, tokenizer {record['tokenizer']['name']} "
          f"(vocabulary {record['tokenizer']['vocab_size']})")


def cmd_corpus_shard(args):
    """Tokenize one shard (a disjoint document range) of a corpus."""
    from moe_rpo.data.prepare import tokenize_shard  # noqa: PLC0415

    counts = tokenize_shard(read_json(args.inventory), args.shards, args.shard, args.out)
    print(json.dumps(counts))


def cmd_corpus_gather(args):
    """Concatenate a corpus's shards into train.bin / val.bin and write meta.json."""
    from moe_rpo.data.prepare import gather  # noqa: PLC0415

    meta, prov = _timed(gather, read_json(args.inventory), args.shards, args.out_dir)
    write_json(Path(args.out_dir) / "meta.json", {**meta, "provenance": prov})
    print(json.dumps({split: info["tokens"] for split, info in meta["splits"].items()}))


def cmd_prepare(args):
    """Prepare a corpus in one process (inventory, every shard, gather), without Snakemake."""
    from moe_rpo.data.prepare import prepare_corpus  # noqa: PLC0415

    meta = prepare_corpus(_settings(args, lambda c: cfg.corpus_spec(c, args.corpus)), args.out_dir)
    print(json.dumps({split: info["tokens"] for split, info in meta["splits"].items()}))


def cmd_base_model(args):
    """Pretrain the dense base model on a corpus (or load it from Hugging Face); write the model and its record."""
    from moe_rpo.lm.base import build_base  # noqa: PLC0415
    from moe_rpo.training.lm import configure_torch  # noqa: PLC0415
    from moe_rpo.models import save_gpt  # noqa: PLC0415
    from moe_rpo.training.distributed import is_main  # noqa: PLC0415

    settings = _settings(args, lambda c: c["base_model"])
    configure_torch(settings["train"]["threads"] or args.threads)  # 0: the job's threads
    out = Path(args.out)
    (model, record), prov = _timed(build_base, settings, args.corpus_dir, out.with_suffix(".ckpt"))
    if not is_main():
        return  # another rank of a data-parallel (torchrun) run: rank 0 writes the outputs
    save_gpt(model, out)
    write_json(out.with_suffix(".json"), {"settings": settings, **record, "provenance": prov})
    out.with_suffix(".ckpt").unlink(missing_ok=True)
    print(f"base model: {record['parameters']:,} parameters, validation loss {record['val_loss']:.4f}")


def cmd_recovery(args):
    """Train every router method of the recovery experiment for one setting (diff / sim<scale>) and seed."""
    import shutil  # noqa: PLC0415

    from moe_rpo.lm import recovery  # noqa: PLC0415
    from moe_rpo.training.lm import configure_torch  # noqa: PLC0415
    from moe_rpo.training.distributed import is_main  # noqa: PLC0415

    settings = _settings(args, cfg.recovery_run_settings)
    known = cfg.recovery_settings(settings)
    if args.setting not in known:
        raise ValueError(f"unknown recovery setting {args.setting!r}; the config has {list(known)}")
    setting = known[args.setting]
    configure_torch(settings["train"]["threads"] or args.threads)  # 0: the job's threads
    out = Path(args.out)
    work_dir = out.with_suffix(".work")
    result, prov = _timed(recovery.run, settings, setting, args.seed, args.base, args.corpus_dir, work_dir)
    if not is_main():
        return  # another rank of a data-parallel (torchrun) run: rank 0 writes the outputs
    rows = recovery.records(result, setting, args.seed)
    write_json(out, {"experiment": "recovery", "setting": setting, "seed": args.seed, "settings": settings,
                     "records": rows, "result": result, "provenance": prov})
    shutil.rmtree(work_dir)
    for row in rows:
        print(f"{row['method']:>20} k={row['k']}  accuracy {row['accuracy']:.3f}  val loss {row['val_loss']:.4f}")


def cmd_train(args):
    """Train one method of a from-scratch experiment (shakespeare_moe, pretraining) for one seed."""
    from moe_rpo.lm import scratch  # noqa: PLC0415
    from moe_rpo.training.lm import configure_torch  # noqa: PLC0415
    from moe_rpo.training.distributed import is_main  # noqa: PLC0415

    settings = _settings(args, lambda c: cfg.training_run_settings(c, args.experiment, args.method))
    configure_torch(settings["train"]["threads"] or args.threads)  # 0: the job's threads
    out = Path(args.out)
    result, prov = _timed(scratch.run, settings, args.seed, args.corpus_dir, out.with_suffix(".ckpt"))
    if not is_main():
        return  # another rank of a data-parallel (torchrun) run: rank 0 writes the outputs
    rows = scratch.records(result)
    write_json(out, {"experiment": args.experiment, "method": args.method, "seed": args.seed, "settings": settings,
                     "records": rows, "result": result, "provenance": prov})
    out.with_suffix(".ckpt").unlink(missing_ok=True)
    final = result["final"]
    load = "dense" if final["max_load_ratio"] is None else f"load ratio {final['max_load_ratio']:.2f}"
    print(f"{args.experiment} {args.method} seed {args.seed}: train loss {final['train_loss']:.4f}, "
          f"val loss {final['val_loss']:.4f}, {load}")


def cmd_tables(args):
    """Per-seed table and summary over seeds (and, for routing, the optima) as CSV."""
    from moe_rpo import tables  # noqa: PLC0415

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = cfg.table_stem(args.experiment)
    if args.experiment == "benchmark":
        section = _settings(args, lambda c: c["benchmark"])
        by_source = {"routing": [], "recovery": [], "shakespeare_moe": []}
        for path in args.runs:
            by_source[read_json(path)["experiment"]].append(path)
        sources = {"toy": tables.per_seed_table(by_source["routing"]),
                   "recovery": tables.per_seed_table(by_source["recovery"]),
                   "shakespeare": tables.per_seed_table(by_source["shakespeare_moe"])}
        sim = next((s for s in section["recovery"]["settings"] if s.startswith("sim")), None)
        table = tables.benchmark_table(sources, section["methods"], sim)
        table.to_csv(out_dir / f"{stem}_medians.csv", index=False)
        tables.benchmark_display(table).to_csv(out_dir / f"{stem}.csv", index=False)
        return
    seeds = tables.per_seed_table(args.runs)
    if args.experiment == "routerless":
        seeds = tables.routerless_table(seeds, _settings(args, lambda c: c["routerless"]))
    seeds.to_csv(out_dir / f"{stem}_seeds.csv", index=False)
    tables.summarize(seeds, args.experiment).to_csv(out_dir / f"{stem}_summary.csv", index=False)
    if args.experiment == "routing":
        from moe_rpo.toy.routing import optima  # noqa: PLC0415

        settings = read_json(args.runs[0])["settings"]
        tables.routing_optima_table(optima(settings)).to_csv(out_dir / "toy_routing_optima.csv", index=False)


def cmd_figures(args):
    """Draw an experiment's figures from its saved arrays and tables."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    if args.experiment == "recovery":
        from moe_rpo.figures.lm import recovery_figures  # noqa: PLC0415

        seeds = pd.read_csv(Path(args.tables_dir) / "lm_recovery_seeds.csv")
        recovery_figures([read_json(path) for path in args.runs], seeds, args.sim_scale, args.threshold, args.out_dir)
        return
    if args.experiment in (*cfg.TRAINING_EXPERIMENTS, "routerless", "benchmark"):
        from moe_rpo.figures import training  # noqa: PLC0415

        stem, out = cfg.table_stem(args.experiment), args.out_dir
        if args.experiment == "benchmark":
            training.benchmark_figure(pd.read_csv(Path(args.tables_dir) / f"{stem}_medians.csv"), out)
        elif args.experiment == "routerless":
            training.routerless_figure(pd.read_csv(Path(args.tables_dir) / f"{stem}_seeds.csv"), out)
        else:
            title = {"shakespeare_moe": "Shakespeare MoE", "pretraining": "Pretraining from scratch"}[args.experiment]
            records = [read_json(path) for path in args.runs]
            shown = [r for r in records if not args.methods or r["method"] in args.methods]
            training.curves_figure(training.training_curves(shown), title, f"{stem}_curves", out)
            training.final_losses_figure(pd.read_csv(Path(args.tables_dir) / f"{stem}_seeds.csv"), title,
                                         f"{stem}_final", out)
        return

    from moe_rpo.figures import toy  # noqa: PLC0415

    runs = []
    for path in args.runs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"missing result arrays: {path}")
        with np.load(path) as data:
            runs.append((int(data["__seed__"]), {key: data[key] for key in data.files}))
    runs.sort(key=lambda run: run[0])
    settings = read_json(Path(args.runs[0]).with_suffix(".json"))["settings"]
    shown = dict(runs).get(args.seed)
    if shown is None:
        raise ValueError(f"--seed {args.seed} is not among the runs' seeds {[s for s, _ in runs]}")
    tables_dir, out = Path(args.tables_dir), args.out_dir
    if args.experiment == "routing":
        toy.routing_trajectories(shown, settings, args.seed, out)
        toy.routing_final_distance(pd.read_csv(tables_dir / "toy_routing_seeds.csv"),
                                   pd.read_csv(tables_dir / "toy_routing_optima.csv"), out)
    elif args.experiment == "collapse":
        toy.collapse_positions(shown, settings, args.seed, out)
        toy.collapse_metrics(runs, settings, out)
    elif args.experiment == "dilemma":
        toy.dilemma_weights(shown, settings, args.seed, out)
    elif args.experiment == "barrier":
        toy.barrier_landscape(runs, settings, out)


def cmd_claims(args):
    """Evaluate every claim from the per-seed tables; write claims.json."""
    from moe_rpo.claims import evaluate  # noqa: PLC0415

    thresholds = _settings(args, lambda c: c["claims"])
    claims = evaluate(args.tables_dir, thresholds)
    write_json(args.out, {"thresholds": thresholds, "claims": claims})
    for claim in claims:
        print(f"{claim['verdict']:>15}  {claim['id']}: {claim['explanation']}")


def cmd_report(args):
    """Render the HTML report pages from the generated files."""
    from moe_rpo.report.render import render_report  # noqa: PLC0415

    full = _settings(args, lambda c: c)
    for path in render_report(Path(args.results_dir), Path(args.out_dir), full, Path(args.templates)):
        print(path)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moe-rpo", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    toy = sub.add_parser("toy", help=cmd_toy.__doc__)
    toy.add_argument("experiment", choices=cfg.TOY_EXPERIMENTS)
    toy.add_argument("--seed", type=int, required=True)
    toy.add_argument("--out", required=True, help="output prefix; writes PREFIX.npz and PREFIX.json")
    _add_settings_args(toy, "the experiment's settings")
    toy.set_defaults(func=cmd_toy)

    inventory = sub.add_parser("corpus-inventory", help=cmd_corpus_inventory.__doc__)
    inventory.add_argument("corpus", help="name of the corpus under 'corpora' in the config")
    inventory.add_argument("--out", required=True, help="inventory record (.json)")
    _add_settings_args(inventory, "the corpus spec")
    inventory.set_defaults(func=cmd_corpus_inventory)

    shard = sub.add_parser("corpus-shard", help=cmd_corpus_shard.__doc__)
    shard.add_argument("--inventory", required=True)
    shard.add_argument("--shards", type=int, required=True, help="number of shards")
    shard.add_argument("--shard", type=int, required=True, help="this shard's number, 0..shards-1")
    shard.add_argument("--out", required=True, help="output prefix; writes PREFIX.{train,val}.bin and PREFIX.json")
    shard.set_defaults(func=cmd_corpus_shard)

    gather = sub.add_parser("corpus-gather", help=cmd_corpus_gather.__doc__)
    gather.add_argument("--inventory", required=True)
    gather.add_argument("--shards", nargs="+", required=True, help="shard prefixes, in shard order")
    gather.add_argument("--out-dir", required=True)
    gather.set_defaults(func=cmd_corpus_gather)

    prepare = sub.add_parser("prepare", help=cmd_prepare.__doc__)
    prepare.add_argument("corpus", help="name of the corpus under 'corpora' in the config")
    prepare.add_argument("--out-dir", required=True)
    _add_settings_args(prepare, "the corpus spec")
    prepare.set_defaults(func=cmd_prepare)

    base = sub.add_parser("base-model", help=cmd_base_model.__doc__)
    _add_training_args(base, "model file (.pt); the record goes next to it (.json)", "the base_model section")
    base.set_defaults(func=cmd_base_model)

    rec = sub.add_parser("recovery", help=cmd_recovery.__doc__)
    rec.add_argument("setting", help="diff, or sim<scale> for a scale in recovery.sim_scales (e.g. sim0.3)")
    rec.add_argument("--seed", type=int, required=True)
    rec.add_argument("--base", required=True, help="the base model (.pt, from base-model)")
    _add_training_args(rec, "run record (.json)", "the recovery section with its routers")
    rec.set_defaults(func=cmd_recovery)

    train = sub.add_parser("train", help=cmd_train.__doc__)
    train.add_argument("experiment", choices=cfg.TRAINING_EXPERIMENTS)
    train.add_argument("method", help="dense or <router>_k<k>, one of the experiment's methods (e.g. rpo_k1)")
    train.add_argument("--seed", type=int, required=True)
    _add_training_args(train, "run record (.json); the checkpoint lives beside it",
                       "the experiment's settings for this method")
    train.set_defaults(func=cmd_train)

    tables = sub.add_parser("tables", help=cmd_tables.__doc__)
    tables.add_argument("experiment", choices=cfg.EXPERIMENTS)
    tables.add_argument("--runs", nargs="+", required=True, help="per-seed run records (.json)")
    tables.add_argument("--out-dir", required=True)
    _add_settings_args(tables, "routerless / benchmark: that config section")
    tables.set_defaults(func=cmd_tables)

    figures = sub.add_parser("figures", help=cmd_figures.__doc__)
    figures.add_argument("experiment", choices=cfg.EXPERIMENTS)
    figures.add_argument("--runs", nargs="+", required=True, help="per-seed arrays (.npz; recovery: records, .json)")
    figures.add_argument("--tables-dir", required=True)
    figures.add_argument("--seed", type=int, default=0, help="seed whose trajectories are drawn")
    figures.add_argument("--sim-scale", type=float, default=0.3, help="recovery: the SIM scale of the SIM panel")
    figures.add_argument("--threshold", type=float, default=0.9, help="recovery: the accuracy threshold drawn")
    figures.add_argument("--methods", nargs="*", default=[],
                         help="training experiments: the methods whose curves are drawn (default: all)")
    figures.add_argument("--out-dir", required=True)
    figures.set_defaults(func=cmd_figures)

    claims = sub.add_parser("claims", help=cmd_claims.__doc__)
    claims.add_argument("--tables-dir", required=True)
    claims.add_argument("--out", required=True)
    _add_settings_args(claims, "the claim thresholds")
    claims.set_defaults(func=cmd_claims)

    report = sub.add_parser("report", help=cmd_report.__doc__)
    report.add_argument("--results-dir", default="results")
    report.add_argument("--out-dir", default="results/report")
    report.add_argument("--templates", default="paper/templates")
    _add_settings_args(report, "the full pipeline config")
    report.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (cfg.ConfigError, FileNotFoundError, FloatingPointError, ValueError) as error:
        print(f"moe-rpo {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
