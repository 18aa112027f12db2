"""Each job kind's declaration (job_kinds.py) decides how its jobs start and how many GPUs they ask for; the rules
follow it (tests/unit/test_code_inputs.py checks every job of the smoke DAG against its kind)."""
from conftest import ROOT

from moe_rpo import config as cfg
from moe_rpo import job_kinds


def test_a_data_parallel_kind_starts_under_torchrun_and_asks_for_a_gpu_per_process():
    two = {"train": {"processes": 2}}
    assert job_kinds.TRAIN_RUN.launcher(two) == ["python", "-m", "torch.distributed.run", "--standalone",
                                                 "--nproc_per_node", "2", "-m", "moe_rpo"]
    assert job_kinds.TRAIN_RUN.gpus(two) == 2
    # the identifiability sweep only evaluates: one process on one GPU whatever the section trains with
    assert job_kinds.RECOVERY_DESIGN.launcher(two) == ["python", "-m", "moe_rpo"]
    assert job_kinds.RECOVERY_DESIGN.gpus(two) == 1
    assert job_kinds.TOY_RUN.gpus({}) == 0 and job_kinds.CORPUS_INVENTORY.gpus({}) == 0


def test_every_kind_reads_only_its_slice_of_the_config():
    config = cfg.load(str(ROOT / "config/config.yaml"))
    recovery = job_kinds.RECOVERY_RUN.settings(config, {"setting": "diff", "method": "rpo_k1"})
    assert recovery["methods"] == [{"router": "rpo", "k": 1}] and set(recovery["routers"]) == {"rpo"}
    toy = job_kinds.TOY_RUN.settings(config, {"experiment": "routing"})
    assert "train" not in toy and toy["seeds"] == list(range(config["toy"]["routing"]["seeds"]))
    assert job_kinds.CORPUS_INVENTORY.settings(config, {"corpus": "shakespeare"}) == config["corpora"]["shakespeare"]
    assert set(job_kinds.JOB_KINDS) == {kind.rule for kind in job_kinds.JOB_KINDS.values()}
