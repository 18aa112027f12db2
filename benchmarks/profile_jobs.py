"""Where the default run's LM jobs spend their time, on this machine, with the default config's settings.

A job's wall time is split into: process startup (`import torch`, and the `torch._dynamo` import that the
first optimizer step triggers), then per job kind
- recovery (one setting and seed): the base model's evaluation, the per-token oracle (once per job), and per
  method its training steps and its evaluations (train_lm run with and without evaluations: the difference);
- Shakespeare MoE (one method and seed): training steps and evaluations, measured the same way;
and torch.profiler's top operators of a few training steps of the first recovery method. Random weights and
tokens stand in for the base model and the corpus: a step's time does not depend on their values (BASE's
auction, which iterates until balanced, is the exception).

    python benchmarks/profile_jobs.py --threads 1
    python benchmarks/profile_jobs.py --methods standard_k1 rpo_k1 base_k1 --profile-steps 20
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from moe_rpo import config as cfg  # noqa: E402
from moe_rpo import sections, values  # noqa: E402
from moe_rpo.lm import scratch  # noqa: E402
from moe_rpo.lm.oracle import oracle  # noqa: E402
from moe_rpo.lm.recovery import layers_of  # noqa: E402
from moe_rpo.models import GPT, GPTConfig, recovery_model  # noqa: E402
from moe_rpo.training.batches import fit_routers_to_corpus  # noqa: E402
from moe_rpo.training.device import configure_torch  # noqa: E402
from moe_rpo.training.evaluation import evaluate  # noqa: E402
from moe_rpo.training.loop import train_lm  # noqa: E402
from moe_rpo.training.settings import TrainSettings  # noqa: E402

VOCAB = 65  # Shakespeare's characters


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def startup_seconds() -> dict:
    """Fresh interpreters: `import torch`, and importing it, building AdamW and taking one step."""
    def run(code: str) -> float:
        return timed(lambda: subprocess.run([sys.executable, "-c", code], check=True))
    first_step = ("import torch; p = torch.nn.Parameter(torch.zeros(1)); o = torch.optim.AdamW([p]); "
                  "p.sum().backward(); o.step()")
    return {"import torch": run("import torch"), "import torch + first optimizer step": run(first_step)}


def split_training(build, train_tokens, val_tokens, settings: dict) -> dict:
    """Seconds of the training steps and of the evaluations of one train_lm run (built fresh each time)."""
    quiet = dict(settings, eval_every=10**9)  # evaluates only at step 0 and at the end
    with_evals = timed(lambda: train_lm(build(), train_tokens, val_tokens, TrainSettings.of(settings), seed=0,
                                        desc="with evaluations"))
    without = timed(lambda: train_lm(build(), train_tokens, val_tokens, TrainSettings.of(quiet), seed=0,
                                     desc="two evaluations"))
    # at step 0, every eval_every steps and after the last step
    evaluations = 1 + settings["steps"] // settings["eval_every"] + bool(settings["steps"] % settings["eval_every"])
    per_eval = max(with_evals - without, 0.0) / max(evaluations - 2, 1)
    return {"steps": without - 2 * per_eval, "evaluations": evaluations * per_eval, "evaluation_count": evaluations}


def recovery_profile(config: dict, methods: list[str], tokens) -> tuple[list[tuple[str, float]], GPT]:
    settings = sections.with_router_specs(dict(config["recovery"], methods=sections.recovery_methods(config, "diff")),
                                          config)  # every method of the setting, each a job of its own
    train = dict(settings["train"], device="cpu")
    base = GPT(GPTConfig(vocab_size=VOCAB, **config["base_model"]["model"])).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    layers = layers_of(settings["layers"], base.config.n_layer)
    chosen = {values.Arm.of(m).slug: m for m in settings["methods"]}

    def build(slug):
        method = chosen[slug]
        model = recovery_model(base, layers, "diff", 0.0, settings["routers"][method["router"]], k=method["k"],
                               num_experts=settings["num_experts"], seed=0)
        fit_routers_to_corpus(model, tokens[0])
        return model

    typed = TrainSettings.of(train)
    rows = [("recovery: base model evaluation", timed(lambda: evaluate(base, tokens[1], typed, torch.device("cpu")))),
            ("recovery: oracle (once per job)", timed(lambda: oracle(build(methods[0]), tokens[1], typed,
                                                                     torch.device("cpu"))))]
    for slug in methods:
        split = split_training(lambda: build(slug), *tokens, train)
        rows += [(f"recovery {slug}: {train['steps']} steps", split["steps"]),
                 (f"recovery {slug}: {split['evaluation_count']} evaluations", split["evaluations"])]
    return rows, build(methods[0])


def shakespeare_profile(config: dict, slug: str, tokens) -> list[tuple[str, float]]:
    settings = sections.training_run_settings(config, "shakespeare_moe", slug)
    train = dict(settings["train"], device="cpu")
    split = split_training(lambda: scratch.build_model(scratch.TrainingRunSettings.of(settings), VOCAB, seed=0), *tokens,
                           train)
    return [(f"shakespeare {slug}: {train['steps']} steps", split["steps"]),
            (f"shakespeare {slug}: {split['evaluation_count']} evaluations", split["evaluations"])]


def top_operators(model: GPT, tokens, settings: dict, steps: int) -> str:
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415

    short = dict(settings, steps=steps, eval_every=10**9, eval_batches=1, device="cpu")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_lm(model, *tokens, TrainSettings.of(short), seed=0, desc="profiled")
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=[str(ROOT / "config/config.yaml")])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=["standard_k1", "rpo_k1"],
                        help="recovery methods to time (slugs of the diff setting's methods)")
    parser.add_argument("--shakespeare", default="standard_k1", help="the Shakespeare MoE method to time")
    parser.add_argument("--profile-steps", type=int, default=20, help="recovery steps under torch.profiler (0: none)")
    args = parser.parse_args()
    config = cfg.load(*args.config)
    configure_torch(args.threads)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, 200_000).astype(np.uint16), rng.integers(0, VOCAB, 20_000).astype(np.uint16)

    rows = list(startup_seconds().items())
    recovery_rows, model = recovery_profile(config, args.methods, tokens)
    rows += recovery_rows + shakespeare_profile(config, args.shakespeare, tokens)
    print(f"\nwhere the time goes ({args.threads} thread(s), default config, random weights and tokens)")
    for name, seconds in rows:
        print(f"  {name:<52}{seconds:8.2f} s")
    recovery = {name: seconds for name, seconds in rows if name.startswith("recovery")}
    training = sum(seconds for name, seconds in recovery.items() if name.endswith(" steps"))
    print(f"  -> recovery: {1 - training / sum(recovery.values()):.0%} of the timed recovery work is not training "
          f"steps (base evaluation, oracle, evaluations; {len(args.methods)} methods, a job runs all of its)")
    if args.profile_steps:
        print(f"\ntorch.profiler, {args.profile_steps} recovery steps of {args.methods[0]}:")
        print(top_operators(model, tokens, config["recovery"]["train"], args.profile_steps))


if __name__ == "__main__":
    main()
