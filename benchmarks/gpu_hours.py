"""GPU-hours of the paper config's GPU rules, measured on the machine it runs on.

Each training job of the paper config (config/config.yaml, config/full.yaml and config/paper.yaml merged) is built at paper
scale and train_lm is timed twice on random tokens, for S1 and S2 steps; both runs evaluate twice (step 0
and the end), so the difference gives the time of one training step and the rest that of one evaluation.
A job's estimate is then steps x step + evaluations x evaluation (final metrics included), and a rule's the
sum over its jobs. Random weights and tokens stand in for GPT-2 and the corpora (the time of a step does not
depend on their values); bf16 and compile follow the config, deterministic kernels as in the pipeline.

    python benchmarks/gpu_hours.py                                     # everything, on a GPU machine
    python benchmarks/gpu_hours.py --rules train_run --steps 3 13 --json gpu_hours.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from moe_rpo import config as cfg  # noqa: E402
from moe_rpo import experiments, job_kinds, sections, values  # noqa: E402
from moe_rpo.lm import scratch  # noqa: E402
from moe_rpo.lm.recovery import layers_of  # noqa: E402
from moe_rpo.models import GPT, GPTConfig, recovery_model  # noqa: E402
from moe_rpo.training.batches import fit_routers_to_corpus  # noqa: E402
from moe_rpo.training.device import configure_torch  # noqa: E402
from moe_rpo.training.loop import train_lm  # noqa: E402
from moe_rpo.training.settings import TrainSettings  # noqa: E402

VOCAB = {"gpt2": 50257, "char": 128}  # char: an upper bound of a character vocabulary


def random_tokens(vocab: int, count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, count).astype(np.uint16 if vocab < 2**16 else np.uint32)


def probe(build, train: dict, steps: tuple[int, int], vocab: int) -> dict:
    """Seconds per training step and per evaluation of the model `build()` makes, with `train` settings."""
    tokens = random_tokens(vocab, 4_000_000, 0), random_tokens(vocab, 400_000, 1)
    times = []
    for count in (steps[0], *steps):  # the first run warms up (kernels, allocator) and is not counted
        model = build()
        fit_routers_to_corpus(model, tokens[0])
        settings = dict(train, steps=count, eval_every=10**9, checkpoint_every=10**9)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_lm(model, *tokens, TrainSettings.of(settings), seed=0, desc=f"probe {count} steps")
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        del model
    step = (times[2] - times[1]) / (steps[1] - steps[0])
    return {"step_s": step, "eval_s": max(times[1] - steps[0] * step, 0.0) / 2}


def job_seconds(timing: dict, train: dict, extra_evaluations: int) -> float:
    evaluations = train["steps"] // train["eval_every"] + 1 + extra_evaluations
    return train["steps"] * timing["step_s"] + evaluations * timing["eval_s"]


def wanted(rule: str, job: str, match: list[str]) -> bool:
    return not match or any(text in f"{rule} {job}" for text in match)


def training_rule(config: dict, steps: tuple[int, int], match: list[str]) -> Iterator[dict]:
    """train_run: one job per method and seed of shakespeare_moe and pretraining."""
    for experiment in experiments.TRAINING_EXPERIMENTS:
        section = config[experiment]
        vocab = VOCAB[config["corpora"][section["corpus"]]["tokenizer"]]
        for method in section["methods"]:
            name = values.Arm.of(method).slug
            if not wanted("train_run", f"{experiment} {name}", match):
                continue
            settings = job_kinds.TRAIN_RUN.settings(config, {"training": experiment, "method": name})
            timing = probe(lambda: scratch.build_model(scratch.TrainingRunSettings.of(settings), vocab, seed=0),
                           settings["train"], steps, vocab)
            # final metrics: train and val evaluations, and one more with misrouting for MoE models
            per_job = job_seconds(timing, settings["train"], 2 + (method["router"] != values.DENSE))
            yield {"rule": "train_run", "job": f"{experiment} {name}", "jobs": len(section["seeds"]), **timing,
                   "job_h": per_job / 3600}


def recovery_base(config: dict) -> tuple[GPT, int]:
    """The frozen base model of the recovery jobs, in its shape (GPT-2 124M's, GPTConfig's defaults, when it
    comes from Hugging Face), and the corpus's vocabulary size."""
    vocab = VOCAB[config["corpora"][config["recovery"]["corpus"]]["tokenizer"]]
    shape = {} if config["base_model"]["source"] == "huggingface" else config["base_model"]["model"]
    base = GPT(GPTConfig(vocab_size=vocab, **shape))
    for p in base.parameters():
        p.requires_grad_(False)
    return base, vocab


def recovery_rows(rule: str, config: dict, layers: list[int], methods: dict[str, dict], jobs: Counter,
                  steps: tuple[int, int], match: list[str]) -> Iterator[dict]:
    """One row per method: its probed step and evaluation times with these MoE layers, and its jobs."""
    recovery = config["recovery"]
    base, vocab = recovery_base(config)
    for slug, method in methods.items():
        if not wanted(rule, slug, match):
            continue
        spec = config["routers"][method["router"]]
        timing = probe(lambda: recovery_model(base, layers_of(layers, base.config.n_layer), "diff", 0.0,
                                              spec, k=method["k"], num_experts=recovery["num_experts"]),
                       recovery["train"], steps, vocab)
        yield {"rule": rule, "job": slug, "jobs": jobs[slug], **timing,
               "job_h": job_seconds(timing, recovery["train"], 0) / 3600}


def recovery_rule(config: dict, steps: tuple[int, int], match: list[str]) -> Iterator[dict]:
    """recovery_run: one job per setting, seed and method (in the benchmark's settings the benchmark's methods
    too); one row per method, with its number of jobs."""
    trained = [m for name in sections.recovery_settings(config["recovery"]) for m in sections.recovery_methods(config, name)]
    seeds = len(config["recovery"]["seeds"])  # one job per setting, method and seed
    jobs = Counter({slug: n * seeds for slug, n in Counter(values.Arm.of(m).slug for m in trained).items()})
    yield from recovery_rows("recovery_run", config, config["recovery"]["layers"],
                         {values.Arm.of(m).slug: m for m in trained}, jobs, steps, match)


def recovery_layers_rule(config: dict, steps: tuple[int, int], match: list[str]) -> Iterator[dict]:
    """recovery_layers_run: per set of MoE layers of the layer sweep, one job per sweep setting, method and seed."""
    sweep, recovery = config["recovery"]["layer_sweep"], config["recovery"]
    methods = {values.Arm.of(m).slug: m for m in sweep["methods"]}
    jobs = Counter({slug: len(sweep["settings"]) * len(recovery["seeds"]) for slug in methods})
    for label, layers in sections.layer_sweep_sets(recovery).items():
        for row in recovery_rows("recovery_layers_run", config, layers, methods, jobs, steps, match):
            yield dict(row, job=f"layers {label} {row['job']}")


RULES = {job_kinds.TRAIN_RUN.rule: training_rule, job_kinds.RECOVERY_RUN.rule: recovery_rule,
         job_kinds.RECOVERY_LAYERS_RUN.rule: recovery_layers_rule}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=[str(ROOT / "config" / name)
                                                        for name in ("config.yaml", "full.yaml", "paper.yaml")])
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    parser.add_argument("--steps", nargs=2, type=int, default=[3, 13], metavar=("S1", "S2"))
    parser.add_argument("--match", nargs="+", default=[], metavar="TEXT",
                        help="probe only the jobs whose 'rule job' contains one of these texts (e.g. pretraining)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    if args.steps[1] <= args.steps[0]:
        parser.error("--steps S1 S2 needs S2 > S1")
    config = cfg.load(*args.config)
    configure_torch(torch.get_num_threads())
    print(f"device: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}; torch {torch.__version__}")
    rows, by_rule = [], {}
    for rule in args.rules:
        for row in RULES[rule](config, tuple(args.steps), args.match):
            rows.append(row)
            print(row, flush=True)
            if args.json:  # after every row: a run stopped by a time limit keeps what it measured
                write_json(args.json, args.steps, rows)
    print(f"\n{'rule':<24}{'job':<34}{'s/step':>8}{'s/eval':>8}{'jobs':>6}{'GPU-h each':>11}")
    for row in rows:
        # a recovery job runs every method: its hours are the sum over the methods' rows
        count = row["jobs"]
        by_rule[row["rule"]] = by_rule.get(row["rule"], 0.0) + row["job_h"] * count
        print(f"{row['rule']:<24}{row['job']:<34}{row['step_s']:8.3f}{row['eval_s']:8.2f}{count:6d}{row['job_h']:11.2f}")
    print("(GPU-h each: one train_run job; for the recovery rules one method, and a job runs each of its methods)\n")
    for rule, hours in by_rule.items():
        print(f"{rule}: {hours:.1f} GPU-hours in all")
    if args.json:
        write_json(args.json, args.steps, rows, by_rule)


def write_json(path: str, steps: list[int], rows: list[dict], hours_by_rule: dict | None = None) -> None:
    Path(path).write_text(json.dumps({"date": dt.date.today().isoformat(),
                                      "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                                      "torch": torch.__version__, "steps": steps, "rows": rows,
                                      "hours_by_rule": hours_by_rule}, indent=1))


if __name__ == "__main__":
    main()
