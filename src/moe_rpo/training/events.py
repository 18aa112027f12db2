"""TensorBoard event files of a training run, so that `tensorboard --logdir results/tensorboard` shows every run of a
pipeline while it trains. The JSON records stay the source of truth; the events are for watching."""
from __future__ import annotations

from pathlib import Path

from moe_rpo.routing_metrics import max_load_ratio


class EventLog:
    """One run's scalars at each evaluation: losses, learning rate, and per MoE layer the router's entropy, E × the
    largest expert's load (1 = balanced) and the routes' flip rate. Without a folder it writes nothing."""

    def __init__(self, folder: str | Path | None, resumed_at: int = 0):
        self.writer = None
        if folder is not None:
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415  (only where events are written)

            # a run resumed at a checkpoint drops what the killed one logged after it, so no step shows twice
            self.writer = SummaryWriter(str(folder), purge_step=resumed_at + 1 if resumed_at else None)

    def evaluation(self, row: dict, lr: float | None) -> None:
        if self.writer is None:
            return
        step = row["step"]
        scalars = {"loss/val": row["val_loss"], "loss/train": row["train_loss"], "lr": lr,
                   "routes/flip_rate": row.get("flip_rate")}
        for i, layer in enumerate(row["layers"]):
            scalars[f"router/layer{i}/entropy"] = layer["entropy"]
            scalars[f"router/layer{i}/max_load"] = max_load_ratio(layer["load"])
        for tag, value in scalars.items():
            if value is not None:
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # visible while the run trains

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
