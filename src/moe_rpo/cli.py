"""Command line of the pipeline: every Snakemake rule calls one of these commands, and each also runs
on its own, e.g. `moe-rpo toy routing --config config/config.yaml --out results/toy/routing/run`."""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
import time
from pathlib import Path

from moe_rpo import config as cfg
from moe_rpo import job_kinds, sections, values
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
                            "(default: %(default)s; e.g. config/config.yaml config/full.yaml config/paper.yaml)")


def _add_training_args(parser, out_help, settings_what, events=True):
    """The arguments every language-model command shares: the prepared corpus, the output, threads and settings;
    those that train also take a folder for TensorBoard events."""
    parser.add_argument("--corpus-dir", required=True,
                        help="prepared corpus (results/data/NAME: train.bin, val.bin, meta.json)")
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default: %(default)s)")
    if events:
        parser.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard events of the training here")
    _add_settings_args(parser, settings_what)


def _timed(step, *args):
    """Run a step and return (its result, provenance)."""
    from moe_rpo.provenance import provenance  # noqa: PLC0415

    started, clock = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    result = step(*args)
    return result, provenance(started, time.perf_counter() - clock)


def cmd_toy(args):
    """Run one toy experiment for all its seeds at once; write PREFIX.npz (arrays) and PREFIX.json (metrics of
    every seed, provenance)."""
    import torch  # noqa: PLC0415

    settings = _settings(args, lambda c: job_kinds.TOY_RUN.settings(c, {"experiment": args.experiment}))
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    module = importlib.import_module(f"moe_rpo.toy.{args.experiment}")
    (arrays, records), prov = _timed(module.run, settings)
    out = Path(args.out)
    write_npz(out.with_suffix(".npz"), arrays)
    write_json(out.with_suffix(".json"), {"experiment": args.experiment, "seeds": settings["seeds"],
                                          "settings": settings, "records": records, "provenance": prov})


def cmd_corpus_inventory(args):
    """Check a corpus spec and count its documents (first preprocessing step; fails before any work)."""
    from moe_rpo.data.prepare import inventory  # noqa: PLC0415

    spec = _settings(args, lambda c: job_kinds.CORPUS_INVENTORY.settings(c, {"corpus": args.corpus}))
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

    meta = prepare_corpus(_settings(args, lambda c: sections.corpus_spec(c, args.corpus)), args.out_dir)
    print(json.dumps({split: info["tokens"] for split, info in meta["splits"].items()}))


def cmd_base_model(args):
    """Pretrain the dense base model on a corpus (or load it from Hugging Face); write the model and its record."""
    from moe_rpo.lm.base_model import build_base  # noqa: PLC0415
    from moe_rpo.models import save_gpt  # noqa: PLC0415
    from moe_rpo.training.device import configure_torch  # noqa: PLC0415
    from moe_rpo.training.distributed import is_main  # noqa: PLC0415

    settings = _settings(args, lambda c: job_kinds.BASE_MODEL.settings(c, {}))
    configure_torch(settings["train"]["threads"], args.threads)
    out = Path(args.out)
    (model, record), prov = _timed(build_base, settings, args.corpus_dir, out.with_suffix(".ckpt"), args.tensorboard)
    if not is_main():
        return  # another rank of a data-parallel (torchrun) run: rank 0 writes the outputs
    save_gpt(model, out)
    write_json(out.with_suffix(".json"), {"settings": settings, **record, "provenance": prov})
    out.with_suffix(".ckpt").unlink(missing_ok=True)
    print(f"base model: {record['parameters']:,} parameters, validation loss {record['val_loss']:.4f}")


def cmd_recovery(args):
    """Train one router method of the recovery experiment (or in the benchmark's settings the benchmark's) for one
    setting (diff / sim<scale>) and seed."""
    from moe_rpo.lm import recovery  # noqa: PLC0415
    from moe_rpo.training.device import configure_torch  # noqa: PLC0415
    from moe_rpo.training.distributed import is_main  # noqa: PLC0415

    settings = _settings(args, lambda c: job_kinds.RECOVERY_RUN.settings(c, {"setting": args.setting,
                                                                              "method": args.method}))
    known = sections.recovery_settings(settings)
    if args.setting not in known:
        raise ValueError(f"unknown recovery setting {args.setting!r}; the config has {list(known)}")
    setting = known[args.setting].as_dict()
    configure_torch(settings["train"]["threads"], args.threads)
    out = Path(args.out)
    result, prov = _timed(recovery.run, settings, setting, args.seed, args.base, args.corpus_dir,
                          out.with_suffix(".ckpt"), args.tensorboard)
    if not is_main():
        return  # another rank of a data-parallel (torchrun) run: rank 0 writes the outputs
    rows = recovery.records(result, setting, args.seed, settings["layers"])
    write_json(out, {"experiment": "recovery", "setting": setting, "method": args.method, "seed": args.seed,
                     "settings": settings, "records": rows, "result": result, "provenance": prov})
    out.with_suffix(".ckpt").unlink(missing_ok=True)
    for row in rows:
        print(f"{row['method']:>20} k={row['k']}  accuracy {row['accuracy']:.3f}  val loss {row['val_loss']:.4f}")


def cmd_recovery_design(args):
    """The identifiability sweep of the recovery experiment for one seed: the per-token oracle of every layer
    of the base model for DIFF and each SIM scale of recovery.design (no router trains)."""
    from moe_rpo.lm import recovery  # noqa: PLC0415
    from moe_rpo.training.device import configure_torch  # noqa: PLC0415

    settings = _settings(args, lambda c: job_kinds.RECOVERY_DESIGN.settings(c, {}))
    configure_torch(settings["train"]["threads"], args.threads)
    rows, prov = _timed(recovery.identifiability_sweep, settings, args.seed, args.base, args.corpus_dir)
    write_json(Path(args.out), {"experiment": "recovery_design", "seed": args.seed, "settings": settings,
                                "records": rows, "provenance": prov})
    for row in rows:
        print(f"{row['setting']:>8} layer {row['layer']}  identifiability {row['identifiability']:.3f}")


def cmd_train(args):
    """Train one method of a from-scratch experiment (shakespeare_moe, pretraining) for one seed."""
    from moe_rpo.lm import scratch  # noqa: PLC0415
    from moe_rpo.training.device import configure_torch  # noqa: PLC0415
    from moe_rpo.training.distributed import is_main  # noqa: PLC0415

    settings = _settings(args, lambda c: job_kinds.TRAIN_RUN.settings(c, {"training": args.experiment,
                                                                           "method": args.method}))
    configure_torch(settings["train"]["threads"], args.threads)
    out = Path(args.out)
    result, prov = _timed(scratch.run, settings, args.seed, args.corpus_dir, out.with_suffix(".ckpt"), args.tensorboard)
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


def _outputs(given: list[str], declared: list[str], what: str) -> list[Path]:
    """The --out paths, which must be the declared files (by name, in order) that the step writes."""
    if [Path(path).name for path in given] != [Path(path).name for path in declared]:
        raise ValueError(f"--out must name the {what} files {[Path(p).name for p in declared]}, in this order")
    return [Path(path) for path in given]


def cmd_tables(args):
    """Write an experiment's tables (per seed, summary over seeds, and what else it makes) as CSV."""
    from moe_rpo import paths  # noqa: PLC0415
    from moe_rpo.experiments import experiment_named, load  # noqa: PLC0415

    experiment = experiment_named(args.experiment)
    view = _settings(args, experiment.view)
    outputs = _outputs(args.out, [paths.table(name) for name in experiment.tables], "table")
    made = load(experiment.make_tables)(experiment, args.runs, view)
    if set(made) != set(experiment.tables):
        raise ValueError(f"{experiment.make_tables} made the tables {sorted(made)}, not {list(experiment.tables)}")
    for name, path in zip(experiment.tables, outputs):
        path.parent.mkdir(parents=True, exist_ok=True)
        made[name].to_csv(path, index=False)


def cmd_figures(args):
    """Draw an experiment's figures from its run records and tables."""
    from moe_rpo import paths  # noqa: PLC0415
    from moe_rpo.experiments import FigureInputs, experiment_named, load  # noqa: PLC0415

    experiment = experiment_named(args.experiment)
    outputs = _outputs(args.out, [f for name in experiment.figures for f in paths.figures(name)], "figure")
    tables = {Path(path).stem: Path(path) for path in args.tables}
    missing = sorted(set(experiment.tables) - set(tables))
    if missing:
        raise ValueError(f"--tables lacks the experiment's tables {missing}")
    out_dir = outputs[0].parent
    if any(path.parent != out_dir for path in outputs):
        raise ValueError("--out: every figure goes into one folder")
    inputs = FigureInputs([Path(path) for path in args.runs], tables, _settings(args, experiment.view), out_dir)
    written = load(experiment.draw)(experiment, inputs)
    if sorted(map(Path, written)) != sorted(outputs):
        raise ValueError(f"{experiment.draw} wrote {sorted(map(str, written))}, not {sorted(map(str, outputs))}")


def cmd_claims(args):
    """Evaluate every claim from the per-seed tables; write claims.json."""
    from moe_rpo.claims import evaluate  # noqa: PLC0415

    thresholds = _settings(args, lambda c: c["claims"])
    claims = evaluate(args.tables_dir, thresholds)
    write_json(args.out, {"thresholds": thresholds, "claims": claims})
    for claim in claims:
        print(f"{claim['verdict']:>12}  {claim['id']}: {claim['explanation']} ({claim['reason']})")


def cmd_report(args):
    """Render the HTML report pages from the generated files."""
    from moe_rpo.report.render import render_report  # noqa: PLC0415

    full = _settings(args, lambda c: c)
    for path in render_report(Path(args.results_dir), Path(args.out_dir), full, Path(args.templates),
                              args.configured_by):
        print(path)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moe-rpo", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    toy = sub.add_parser("toy", help=cmd_toy.__doc__)
    toy.add_argument("experiment", help="a section under `toy` (routing, collapse, dilemma, barrier)")
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
    rec.add_argument("method", help="<router>_k<k>, one of the setting's methods (e.g. rpo_k1)")
    rec.add_argument("--seed", type=int, required=True)
    rec.add_argument("--base", required=True, help="the base model (.pt, from base-model)")
    _add_training_args(rec, "run record (.json); the checkpoint lives beside it", "the recovery section with its router")
    rec.set_defaults(func=cmd_recovery)

    design = sub.add_parser("recovery-design", help=cmd_recovery_design.__doc__)
    design.add_argument("--seed", type=int, required=True)
    design.add_argument("--base", required=True, help="the base model (.pt, from base-model)")
    _add_training_args(design, "sweep record (.json)", "the recovery section with its routers", events=False)
    design.set_defaults(func=cmd_recovery_design)

    train = sub.add_parser("train", help=cmd_train.__doc__)
    train.add_argument("experiment", help="a training experiment's section (shakespeare_moe, pretraining)")
    train.add_argument("method", help="dense or <router>_k<k>, one of the experiment's methods (e.g. rpo_k1)")
    train.add_argument("--seed", type=int, required=True)
    _add_training_args(train, "run record (.json); the checkpoint lives beside it",
                       "the experiment's settings for this method")
    train.set_defaults(func=cmd_train)

    tables = sub.add_parser("tables", help=cmd_tables.__doc__)
    tables.add_argument("experiment", help="its name in the registry (moe_rpo/experiments.py), e.g. routing")
    tables.add_argument("--runs", nargs="+", required=True, help="the experiment's run records (.json)")
    tables.add_argument("--out", nargs="+", required=True,
                        help="the table files, in the experiment's order (e.g. results/tables/toy_routing_seeds.csv ...)")
    _add_settings_args(tables, "what the experiment's tables read of the config (its view)")
    tables.set_defaults(func=cmd_tables)

    figures = sub.add_parser("figures", help=cmd_figures.__doc__)
    figures.add_argument("experiment", help="its name in the registry (moe_rpo/experiments.py), e.g. routing")
    figures.add_argument("--runs", nargs="+", required=True, help="the experiment's run records (.json; toys: "
                         "their arrays lie beside them, .npz)")
    figures.add_argument("--tables", nargs="+", required=True, help="the experiment's tables (.csv)")
    figures.add_argument("--out", nargs="+", required=True,
                         help="the figure files (PNG and PDF of each figure), in the experiment's order")
    _add_settings_args(figures, "what the experiment's figures read of the config (its view)")
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
    report.add_argument("--configured-by", default="", help="the configuration that produced the run, in words")
    _add_settings_args(report, "the full pipeline config")
    report.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (values.ConfigError, FileNotFoundError, FloatingPointError, ValueError) as error:
        print(f"moe-rpo {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
