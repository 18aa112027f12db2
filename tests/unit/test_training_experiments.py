"""The from-scratch experiments (Shakespeare MoE, pretraining, routerless) and the router benchmark: runs are
deterministic and resume, misrouting is a real perturbation, tables and claims follow from the numbers, and
bad configs are refused."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from moe_rpo import cli, schema, sections, values
from moe_rpo import config as cfg
from moe_rpo.claims import pretraining_claims, shakespeare_moe_claims
from moe_rpo.data.prepare import prepare_corpus
from moe_rpo.experiments import EXPERIMENTS
from moe_rpo.lm import scratch
from moe_rpo.routers import build_router
from moe_rpo.routing_metrics import Misrouted, UnitWeights
from moe_rpo.tables import benchmark_display, benchmark_table, routerless_table
from moe_rpo.verdicts import INCONCLUSIVE, REFUTED, REPRODUCED

TINY = {"model": {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16},
        "train": {"steps": 8, "batch_size": 4, "block_size": 16, "eval_every": 4, "eval_batches": 2,
                  "checkpoint_every": 2, "device": "cpu"}}


CLAIMS = cfg.validate({})["claims"]  # the default thresholds and arms


def config(**sections):
    base = {"shakespeare_moe": {**TINY, "methods": [{"router": r, "k": k} for r, k in
                                                    (("standard", 1), ("standard", 2), ("em", 1), ("rpo", 1),
                                                     ("hash", 1))]},
            "pretraining": {**TINY, "methods": [{"router": "dense", "k": 1}, {"router": "standard", "k": 2},
                                                {"router": "rpo", "k": 2}]},
            "routerless": {"fixed": [{"router": "hash", "k": 1}], "learned": [{"router": "standard", "k": 1}]}}
    return cfg.validate({**base, **sections})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    spec = schema.validate_definition({"source": "shakespeare", "tokenizer": "char", "max_documents": 20,
                                    "val_fraction": 0.3}, "corpus_spec")
    root = tmp_path_factory.mktemp("scratch") / "corpus"
    prepare_corpus(spec, root, shards=1)
    return root


@pytest.mark.parametrize("method", ["dense", "standard_k2", "rpo_k1", "em_k1"])
def test_a_training_run_is_deterministic_and_reports_every_metric(corpus, method):
    settings = sections.training_run_settings(config(), "pretraining" if method == "dense" else "shakespeare_moe", method)
    first, second = (scratch.run(settings, 3, corpus) for _ in range(2))
    assert first == second
    final = first["final"]
    assert set(final) == {"train_loss", "val_loss", "generalization_gap", "max_load_ratio", "max_vio_batch",
                          "max_vio_global", "gini", "dead_experts", "entropy", "unrouted", "misrouting_penalty",
                          "route_regret", "token_specialisation", "coactivation"}
    assert final["generalization_gap"] == pytest.approx(final["val_loss"] - final["train_loss"])
    if method == "dense":
        assert final["misrouting_penalty"] is None and final["max_load_ratio"] is None and final["gini"] is None
    else:
        assert 1 <= final["max_load_ratio"] <= 4 and final["unrouted"] == 0
        assert final["max_vio_global"] == pytest.approx(final["max_load_ratio"] - 1)
        assert final["route_regret"] >= 0 and 0 < final["token_specialisation"] <= 1
        assert all(row["saturation"] <= 1 for row in first["history"]) and first["history"][-1]["saturation"] == 1
    assert [row["step"] for row in first["history"]] == [0, 4, 8]
    (row,) = scratch.records(first)
    assert row["mean_train_loss"] == pytest.approx(np.mean([first["history"][1]["train_loss"],
                                                            first["history"][2]["train_loss"]]))


def test_a_killed_training_run_resumes_to_the_same_record(corpus, tmp_path, monkeypatch):
    settings = sections.training_run_settings(config(), "shakespeare_moe", "rpo_k1")
    uninterrupted = scratch.run(settings, 0, corpus)
    checkpoint = tmp_path / "run.ckpt"
    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated kill")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        scratch.run(settings, 0, corpus, checkpoint)
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert checkpoint.is_file()
    assert scratch.run(settings, 0, corpus, checkpoint) == uninterrupted


@pytest.mark.parametrize("experiment, method", [("pretraining", "dense"), ("shakespeare_moe", "hash_balanced_k1")])
def test_the_train_command_writes_its_record_and_drops_its_checkpoint(corpus, tmp_path, capsys, experiment, method):
    """Through the command line, for the two kinds of run with no learned router: dense (no routing metrics)
    and balanced hashing (fitted to the corpus' token counts before training)."""
    extra = {"pretraining": [], "shakespeare_moe": [{"router": "hash_balanced", "k": 1}]}[experiment]
    full = config()
    settings = sections.training_run_settings(config(**{experiment: {**TINY, "methods": full[experiment]["methods"] + extra}}),
                                         experiment, method)
    out = tmp_path / "run.json"
    cli.main(["train", experiment, method, "--seed", "0", "--settings", json.dumps(settings),
              "--corpus-dir", str(corpus), "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["method"] == method and record["records"][0]["val_loss"] > 0
    assert not out.with_suffix(".ckpt").exists()
    assert ("dense" if method == "dense" else "load ratio") in capsys.readouterr().out


def test_misrouting_sends_every_token_to_another_expert_with_the_same_weights():
    torch.manual_seed(0)
    router = build_router({"method": "softmax_topk"}, 8, 4, 2).eval()
    x = torch.randn(100, 8)
    original, moved = router(x), Misrouted(router)(x)
    assert (moved.experts != original.experts).all()
    assert (moved.experts[:, 0] != moved.experts[:, 1]).all()  # still k distinct experts
    assert torch.equal(moved.weights, original.weights)
    assert torch.equal(Misrouted(router)(x).experts, moved.experts)  # the same misrouting every time


def test_unit_weights_keep_the_selection_and_count_the_learned_weights():
    torch.manual_seed(0)
    router = build_router({"method": "softmax_topk", "normalize": False}, 8, 4, 2).eval()
    x = torch.randn(100, 8)
    original, wrapper = router(x), UnitWeights(router)
    unit = wrapper(x)
    assert torch.equal(unit.experts, original.experts) and torch.equal(unit.weights, torch.full((100, 2), 0.5))
    assert wrapper.mean_weight == pytest.approx(original.weights.sum(-1).mean().item())


def shakespeare_rows(values: dict[tuple[str, int], tuple[float, float, float]], steps=5000,
                     tokens=10**9, noise=0.0) -> pd.DataFrame:
    """Rows for three seeds: (mean_train_loss, train_loss, val_loss) per (method, k), each seed's numbers shifted
    by a different multiple of `noise`."""
    return pd.DataFrame([{"method": m, "k": k, "seed": seed, "mean_train_loss": mean + noise * shift,
                          "train_loss": train, "val_loss": val + noise * shift,
                          "generalization_gap": val - train + noise * shift, "max_load_ratio": 1.5, "steps": steps,
                          "tokens": tokens}
                         for i, ((m, k), (mean, train, val)) in enumerate(values.items())
                         for seed, shift in zip((0, 1, 2), ((-1, 0, 1), (1, -1, 0), (0, 1, -1), (1, 0, -1))[i % 4])])


RPO_BEST = {("standard", 1): (2.0, 0.6, 1.6), ("standard", 2): (2.1, 0.5, 1.6), ("em", 1): (2.2, 0.6, 1.7),
            ("rpo", 1): (1.8, 0.2, 1.6)}
RPO_WORST = {("standard", 1): (2.0, 0.5, 1.9), ("standard", 2): (2.1, 0.5, 1.6), ("em", 1): (2.2, 0.6, 1.7),
             ("rpo", 1): (2.3, 0.7, 0.8)}


def verdicts(claims):
    return [c["verdict"] for c in claims]


def test_shakespeare_claims_take_each_verdict_with_the_numbers():
    assert verdicts(shakespeare_moe_claims(shakespeare_rows(RPO_BEST), CLAIMS)) == [REPRODUCED, REPRODUCED]
    assert verdicts(shakespeare_moe_claims(shakespeare_rows(RPO_WORST), CLAIMS)) == [REFUTED, REFUTED]
    # differences of 0.1-0.2 between methods against per-seed noise of 0.5: the intervals cross zero
    assert verdicts(shakespeare_moe_claims(shakespeare_rows(RPO_BEST, noise=0.5), CLAIMS)) == [INCONCLUSIVE] * 2


@pytest.mark.parametrize("steps, train_loss, shortfall", [
    (200, None, "200 training steps, the paper's effect needs 2000"),
    (5000, 2.5, "the lowest final training loss is 2.500, the paper's runs end below 1.1"),
])
def test_a_run_below_the_papers_regime_is_inconclusive_whatever_its_numbers(steps, train_loss, shortfall):
    values = {arm: (mean, train if train_loss is None else train_loss, val)
              for arm, (mean, train, val) in RPO_BEST.items()}
    for claim in shakespeare_moe_claims(shakespeare_rows(values, steps=steps), CLAIMS):
        assert claim["verdict"] == INCONCLUSIVE and claim["reason"].startswith(f"below the paper's regime: {shortfall}")
        assert claim["paper"]["regime"]["reached"] is False
        assert {row["quantity"].split()[0] for row in claim["paper"]["values"]} == {"top-1", "top-2", "EM", "RPO"}


@pytest.mark.parametrize("dense, moe, rpo, tokens, expected", [
    (2.0, 1.8, 1.805, 10**9, [REPRODUCED, REPRODUCED]),
    (2.0, 1.8, 1.7, 10**9, [REPRODUCED, REFUTED]),      # RPO gains 0.1 > 0.01
    (1.7, 1.8, 1.8, 10**9, [REFUTED, REPRODUCED]),      # dense is best
    (2.0, 1.8, 1.805, 10**6, [INCONCLUSIVE, INCONCLUSIVE]),  # far fewer tokens than the paper's effect needs
])
def test_pretraining_claims_follow_the_numbers(dense, moe, rpo, tokens, expected):
    df = shakespeare_rows({("dense", 1): (0, 0, dense), ("standard", 2): (0, 0, moe), ("rpo", 2): (0, 0, rpo)},
                          tokens=tokens, noise=0.001)
    assert verdicts(pretraining_claims(df, CLAIMS | {"pretraining_gain": 0.01})) == expected


def test_routerless_table_labels_fixed_and_learned_runs():
    df = shakespeare_rows({("standard", 1): (2, 1, 1), ("hash", 1): (2, 1, 1), ("rpo", 1): (2, 1, 1)})
    table = routerless_table(df, {"fixed": [{"router": "hash", "k": 1}], "learned": [{"router": "standard", "k": 1}]})
    assert sorted(zip(table["method"], table["router_kind"])) == [("hash", "fixed")] * 3 + [("standard", "learned")] * 3


def test_benchmark_table_gives_t_intervals_and_marks_methods_that_did_not_run():
    toy = pd.DataFrame({"method": ["a", "a", "b"], "k": [1, 1, 1], "seed": [0, 1, 0], "gap_to_optimum": [0.1, 0.3, 0.0]})
    recovery = pd.DataFrame({"method": ["a", "a"], "k": [1, 1], "seed": [0, 1], "setting": ["diff", "sim0.3"],
                             "accuracy": [0.9, 0.2], "regret": [0.01, 0.5], "task_gradient": [True, True]})
    shakespeare = shakespeare_rows({("a", 1): (2, 1.0, 1.1)})
    table = benchmark_table({"toy": toy, "recovery": recovery, "shakespeare": shakespeare},
                            [{"router": "a", "k": 1}, {"router": "b", "k": 1}], "sim0.3")
    a, b = table.iloc[0], table.iloc[1]
    half = 12.706 * 0.1  # t(0.975, 1 dof) x the standard error of [0.1, 0.3]
    assert a["toy_gap_to_optimum_mean"] == pytest.approx(0.2) and a["toy_gap_to_optimum_seeds"] == 2
    assert (a["toy_gap_to_optimum_low"], a["toy_gap_to_optimum_high"]) == pytest.approx((0.2 - half, 0.2 + half), rel=1e-3)
    assert a["diff_accuracy_mean"] == 0.9 and a["sim_accuracy_mean"] == 0.2 and a["load_ratio_seeds"] == 3
    assert (a["diff_regret_mean"], a["sim_regret_mean"]) == (0.01, 0.5)
    assert b["diff_accuracy_seeds"] == 0 and np.isnan(b["diff_accuracy_mean"])
    assert b["toy_gap_to_optimum_seeds"] == 1 and b["toy_gap_to_optimum_low"] == b["toy_gap_to_optimum_high"] == 0.0
    quality, routing = benchmark_display(table, "quality"), benchmark_display(table, "routing")
    assert quality.loc[0, "toy gap to optimum"] == f"0.2 [{0.2 - half:.3g}, {0.2 + half:.3g}]"
    assert quality.loc[1, "toy gap to optimum"] == "0" and quality.loc[1, "shakespeare val loss"] == "not run"
    assert list(quality["router"]) == ["a", "b"] and list(quality["k"]) == [1, 1] and "gini" in benchmark_display(table, "balance")
    assert list(routing["task gradient"]) == ["yes", "not run"]


@pytest.mark.parametrize("sections, message", [
    ({"routerless": {"fixed": [{"router": "hash", "k": 2}]}}, "not among the shakespeare_moe.methods"),
    ({"benchmark": {"recovery": {"settings": ["sim0.5"]}}}, "not a recovery setting"),
    ({"recovery": {"methods": [{"router": "dense", "k": 1}]}}, "router 'dense' is not defined"),
    ({"shakespeare_moe": {**TINY, "methods": [{"router": "rpo", "k": 1}, {"router": "rpo", "k": 1}]}}, "more than once"),
    ({"pretraining": {**TINY, "methods": [{"router": "rpo", "k": 1}], "moe_layers": [5]}}, "does not have"),
    ({"pretraining": {**TINY, "methods": [{"router": "rpo", "k": 1}], "corpus": "tinystories"}},
     "not defined under 'corpora'"),
    ({"pretraining": {**TINY, "methods": []}}, r"pretraining.methods: \[\] should be non-empty"),
])
def test_bad_experiment_configs_are_refused(sections, message):
    with pytest.raises(values.ConfigError, match=message):
        config(**sections)


def test_every_job_of_the_report_has_a_distinct_record():
    c = config()
    jobs = [job for experiment in EXPERIMENTS.values() for job in experiment.jobs(c)]
    routerless = {job.record for job in EXPERIMENTS["routerless"].jobs(c)}
    assert routerless <= {job.record for job in EXPERIMENTS["shakespeare_moe"].jobs(c)}  # derived, not rerun
    assert len({job.record for job in jobs}) == len({job.key for job in jobs})


def test_a_shakespeare_run_with_fine_grained_and_shared_experts(corpus):
    section = {**TINY, "granularity": 2, "shared_experts": 1,
               "methods": config()["shakespeare_moe"]["methods"]}
    settings = sections.training_run_settings(config(shakespeare_moe=section), "shakespeare_moe", "standard_k1")
    result = scratch.run(settings, 0, corpus)
    assert result["final"]["gini"] is not None and len(result["history"][-1]["layers"][0]["load"]) == 8


# --- readings of what the paper leaves unsaid (claims.readings) --------------------------------------------------

READINGS = {"per_iteration": {"description": "E then M on one batch", "routers": ["rpo", "em"],
                              "train": {"alternation": "iteration"}},
            "equal_updates": {"description": "twice the steps", "routers": ["rpo", "em"], "train": {"steps_scale": 2}},
            "wide_std": {"description": "std 0.3", "routers": ["rpo"], "options": {"weight_std": 0.3}}}


def test_a_reading_reruns_the_methods_of_its_routers_with_its_changes():
    from moe_rpo.experiments import reading_jobs

    conf = config(claims={"readings": READINGS})
    jobs = reading_jobs(conf)
    assert {job.record.split("/")[3:5][0] for job in jobs} == set(READINGS)
    assert len(jobs) == (2 + 2 + 1) * len(conf["shakespeare_moe"]["seeds"])
    base = sections.training_run_settings(conf, "shakespeare_moe", "rpo_k1")
    doubled = sections.reading_run_settings(conf, "equal_updates", "rpo_k1")
    assert [doubled["train"][key] for key in ("steps", "eval_every", "checkpoint_every")] == \
        [2 * base["train"][key] for key in ("steps", "eval_every", "checkpoint_every")]
    assert sections.reading_run_settings(conf, "per_iteration", "em_k1")["train"]["alternation"] == "iteration"
    assert sections.reading_run_settings(conf, "wide_std", "rpo_k1")["routers"]["rpo"]["weight_std"] == 0.3
    assert base["train"]["alternation"] == "step" and base["routers"]["rpo"]["weight_std"] == 0.1


@pytest.mark.parametrize("reading, message", [
    ({"description": "x", "routers": ["jitter"]}, "claims.readings.r.routers: 'jitter' is not among"),
    ({"description": "x", "routers": ["rpo"], "options": {"weight_std": -1}}, "claims.readings.r.options: router 'rpo'"),
    ({"description": "x", "routers": ["rpo"], "options": {"nope": 1}}, "claims.readings.r.options: router 'rpo'"),
    ({"description": "x", "routers": ["rpo"], "train": {"steps": 5}}, "claims.readings.r.train"),
])
def test_a_reading_that_cannot_run_is_refused_naming_its_key(reading, message):
    with pytest.raises(values.ConfigError, match=message):
        config(claims={"readings": {"r": reading}})


def test_alternation_per_iteration_trains_the_experts_every_step(corpus, monkeypatch):
    """Per step: 'step' takes one optimizer step, in the phase that flips with every step; 'iteration' an E-step
    and then an M-step on the same batch."""
    from moe_rpo.training import loop

    seen, original = {}, loop.set_phase
    for schedule in ("step", "iteration"):
        phases = []
        monkeypatch.setattr(loop, "set_phase", lambda r, rp, op, phase: phases.append(phase) or original(r, rp, op, phase))
        conf = config(shakespeare_moe={**TINY, "methods": config()["shakespeare_moe"]["methods"],
                                       "train": {**TINY["train"], "alternation": schedule}})
        scratch.run(sections.training_run_settings(conf, "shakespeare_moe", "rpo_k1"), 0, corpus)
        seen[schedule] = [p for p in phases if p in ("E", "M")]
    steps = TINY["train"]["steps"]
    assert seen["step"][:steps] == ["E", "M"] * (steps // 2)
    assert seen["iteration"][:2 * steps] == ["E", "M"] * steps


def test_each_claim_is_judged_again_under_every_reading():
    from moe_rpo.claims import under_readings

    as_run = shakespeare_rows(RPO_WORST)
    same = shakespeare_rows(RPO_WORST)
    same = same[same["method"] == "rpo"].assign(reading="wide_std")
    claims = under_readings(shakespeare_moe_claims, as_run, same, CLAIMS)
    assert [c["robustness"] for c in claims] == ["refuted under every reading tried (2, the runs as configured "
                                                 "included)"] * 2
    better = shakespeare_rows(RPO_BEST)
    better = better[better["method"] == "rpo"].assign(reading="per_iteration")
    claims = under_readings(shakespeare_moe_claims, as_run, pd.concat([same, better]), CLAIMS)
    assert claims[0]["robustness"].startswith("depends on the reading: as run: refuted; wide_std: refuted; "
                                              "per_iteration: ")
    assert [row["reading"] for row in claims[0]["readings"]] == ["as run", "wide_std", "per_iteration"]
    assert claims[0]["readings"][2]["verdict"] != REFUTED
    assert "readings" not in shakespeare_moe_claims(as_run, CLAIMS)[0]  # no readings: no table
