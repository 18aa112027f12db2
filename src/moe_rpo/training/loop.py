"""Language-model training: random windows of a token file, AdamW with warm-up and cosine decay, gradient
clipping, E/M alternation for routers that ask for it, periodic evaluation, and checkpoints that resume
exactly (model, optimiser, RNG and data position).

Under `torchrun` (WORLD_SIZE > 1) training is data-parallel: every rank draws the same global batch and
trains on its contiguous share of the rows, gradients are averaged by DistributedDataParallel, and the
result is that of one process with the same global batch up to floating-point reduction order. The
differences: REINFORCE's leave-one-out batch-mean baseline, batch-statistic auxiliary losses (load
balancing of noisy_topk and switch) and routing that assigns tokens within a batch (expert capacity, expert
choice, BASE layers) work on a rank's rows, and sampling (sampled routing, dropout) draws from a per-rank
random stream (equal in distribution, not sample for sample). Only rank 0 writes checkpoints."""
from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from moe_rpo.models import GPT
from moe_rpo.routing_metrics import routing_metrics
from moe_rpo.training import distributed
from moe_rpo.training.batches import Batches, to_device
from moe_rpo.training.evaluation import evaluate, flip_rate, saturation
from moe_rpo.training.events import EventLog
from moe_rpo.training.resume import TrainState
from moe_rpo.training.settings import TrainSettings
from moe_rpo.training.step import E_STEP, M_STEP, phases_at, set_phase


@dataclass
class PendingLoss:
    """A micro-batch's training loss, left on the device until read_losses: reading it at once would make the
    host wait for the GPU every step."""
    step: int
    phase: str
    part: int  # which micro-batch of the step
    loss: torch.Tensor  # this process's LM loss
    terms: dict[str, torch.Tensor]  # the routers' loss terms
    reduced: torch.Tensor  # [the LM loss, 1 if the total loss was not finite], each summed over the processes


def read_losses(pending: list[PendingLoss], micro: int, world: distributed.World, desc: str) -> list[float]:
    """Each pending step's training loss (the mean over its micro-batches and processes), read from the
    device at once; the first non-finite total loss raises, naming its step."""
    values = torch.stack([p.reduced for p in pending]).tolist() if pending else []
    for p, (_, nonfinite) in zip(pending, values):
        if nonfinite:
            raise FloatingPointError(
                f"{desc}: non-finite loss at step {p.step} ({p.phase} phase"
                + (f", micro-batch {p.part + 1} of {micro}" if micro > 1 else "") + f"): loss "
                f"{p.loss.item()}, terms { {k: v.item() for k, v in p.terms.items()} }"
                + (f" on rank {world.rank} of {world.size}" if world.size > 1 else ""))
    losses = [loss / world.size for loss, _ in values]
    return [float(np.mean(losses[i:i + micro])) for i in range(0, len(losses), micro)]


def lr_at(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay from lr to min_lr_ratio * lr at the last step."""
    lr, steps, warmup = settings.lr, settings.steps, settings.warmup_steps
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (settings.min_lr_ratio + (1 - settings.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(params: dict[str, torch.nn.Parameter], settings: TrainSettings,
                   fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases and LayerNorm gains), as in nanoGPT. By name as
    well as shape: the stacked experts' biases ([E, H], models/experts.py) are matrices of biases. `fused`
    (default: when every parameter is on a GPU, as nanoGPT does) updates all parameters in one kernel."""
    decays = {name: p.dim() >= 2 and not name.endswith("bias") for name, p in params.items()}
    groups = [{"params": [p for name, p in params.items() if decays[name]], "weight_decay": settings.weight_decay},
              {"params": [p for name, p in params.items() if not decays[name]], "weight_decay": 0.0}]
    if fused is None:
        fused = all(p.is_cuda for p in params.values())
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=settings.lr, betas=tuple(settings.betas),
                             fused=fused)


def any_samples(routers) -> bool:
    """Whether some router samples its decision while training (and so learns by REINFORCE)."""
    return any(getattr(router, "samples", False) for router in routers)


@torch.no_grad()
def greedy_loss(model: GPT, routers, x: torch.Tensor, y: torch.Tensor, autocast) -> torch.Tensor:
    """Per-token loss [B*T] when every router takes its greedy decision: a REINFORCE baseline that does
    not depend on the sampled routing and removes most of the token-to-token spread of the loss."""
    for router in routers:
        router.eval()
    with autocast:
        loss = model(x, y).token_loss.float()
    for router in routers:
        router.train()
    return loss


def train_lm(model: GPT, train_tokens: np.ndarray, val_tokens: np.ndarray, settings: TrainSettings, seed: int,
             checkpoint: str | Path | None = None, fingerprint: str = "", desc: str = "train",
             events_dir: str | Path | None = None, layer_metrics=routing_metrics) -> list[dict]:
    """Train the parameters of `model` that require grad; return the evaluation rows (step 0, every
    eval_every steps, and the last step). For an MoE model each row also has the routes' stability: the flip
    rate since the previous evaluation and the saturation (the share of the final routing already chosen). With
    `checkpoint`, the state is saved every checkpoint_every steps and a run restarted with the same fingerprint
    continues exactly where the saved one stopped. With `events_dir`, each evaluation is also written as TensorBoard
    events there (events.py). Each evaluation measures every MoE layer's routing with `layer_metrics`.

    Routers with an alternation train in E-steps and the other trainable parameters in M-steps (the
    frozen router then routes greedily). When only routers train, every step is an E-step. When nothing
    trains (a parameter-free router such as hashing in a frozen model), the steps only measure the losses.

    Under torchrun the ranks train data-parallel (see the module's docstring); `settings.batch_size`
    is the global batch, and every rank returns the same history. With grad_accum > 1 each rank's rows split into
    that many micro-batches whose gradients add up before the one optimizer step.
    """
    world, device = distributed.setup(settings.torch_device)
    model.to(device)
    torch.manual_seed(distributed.rank_seed(seed, world.rank))
    batches = Batches(train_tokens, settings.batch_size, settings.block_size, seed,
                      share=(world.rank, world.size))
    if (settings.batch_size // world.size) % settings.grad_accum:
        raise ValueError(f"batch_size={settings.batch_size} gives {settings.batch_size // world.size} rows per "
                         f"process, which do not split into grad_accum={settings.grad_accum} equal micro-batches")
    # with nothing to train (a parameter-free router in a frozen model) the loop only measures the losses
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    routers = model.routers()
    router_ids = {id(p) for router in routers for p in router.parameters()}
    router_params = [p for p in trainable.values() if id(p) in router_ids]
    other_params = [p for p in trainable.values() if id(p) not in router_ids]
    alternation = routers[0].alternation if routers and router_params and other_params else None
    optimizer = make_optimizer(trainable, settings) if trainable else None
    # router state that is no parameter (a balancing bias, an adaptive coefficient, a hash table)
    buffers = {f"router{i}.{name}": b for i, router in enumerate(routers) for name, b in router.named_buffers()}

    checkpoint = Path(checkpoint) if checkpoint else None
    state = TrainState.restore(checkpoint, fingerprint, trainable, buffers, optimizer, batches, seed, device, world,
                               desc)

    forward = torch.compile(model) if settings.compile else model
    synced = distributed.data_parallel(model, routers, router_params, other_params, alternation, device, settings) \
        if world.size > 1 and trainable else None
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if settings.bf16 and device.type == "cuda"
                else contextlib.nullcontext())

    def evaluate_at(step: int) -> dict:
        """The evaluation row after `step`; for an MoE model with its routes' flip rate since the last one."""
        row = evaluate(model, val_tokens, settings, device, world, label=f"{desc}: evaluation after step {step}",
                       routes=True, layer_metrics=layer_metrics)
        if "selection" in row:
            selection = row.pop("selection")
            if state.routes:
                row["flip_rate"] = flip_rate(state.routes[-1], selection)
            state.routes.append(selection)
        return row

    events = EventLog(events_dir if world.rank == 0 else None, resumed_at=state.step)
    if state.step == 0:
        state.history.append({"step": 0, "train_loss": None, **evaluate_at(0)})
        events.evaluation(state.history[-1], lr_at(0, settings) if optimizer else None)
    pending = []  # the losses of the steps since the last read, on the device
    bar = tqdm(range(state.step, settings.steps), desc=desc, total=settings.steps, initial=state.step,
               file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 15, disable=world.rank != 0)
    for step in bar:
        for group in optimizer.param_groups if optimizer else ():
            group["lr"] = lr_at(step, settings)
        x, y = to_device(batches.next(), device)
        for phase in phases_at(step, alternation, settings.alternation):
            model.train()
            set_phase(routers, router_params, other_params, phase)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
            micro = settings.grad_accum
            routings = []  # per micro-batch: each MoE layer's routing
            for part, (mx, my) in enumerate(zip(x.chunk(micro), y.chunk(micro))):
                baseline = greedy_loss(model, routers, mx, my, autocast) if (
                    settings.reinforce_baseline == "greedy" and phase != M_STEP and any_samples(routers)) else None
                # data-parallel E-steps bypass DDP, whose reducer holds the M-step's parameters (see data_parallel)
                ddp = synced is not None and phase != E_STEP
                # gradients of all but the last micro-batch add up locally: DDP all-reduces their sum once
                with synced.no_sync() if ddp and part < micro - 1 else contextlib.nullcontext():
                    with autocast:
                        out = (synced if ddp else forward)(mx, my)
                        terms = {}
                        for i, (router, routing) in enumerate(zip(routers, out.routing)):
                            layer_terms = router.loss_terms(routing, out.token_loss, baseline)
                            terms |= {f"layer{i}/{key}": value for key, value in layer_terms.items()}
                        total = out.loss + sum(terms.values(), torch.zeros((), device=device))
                    dtype = torch.promote_types(out.loss.dtype, torch.float32)  # float64 stays
                    reduced = torch.stack([out.loss.detach().to(dtype), (~torch.isfinite(total)).to(dtype)])
                    if world.size > 1:  # one all-reduce: the summed loss, and on how many ranks the loss was not finite
                        distributed.sum_(reduced)
                    pending.append(PendingLoss(step, phase, part, out.loss.detach(),
                                               {key: value.detach() for key, value in terms.items()}, reduced))
                    if optimizer is not None:
                        (total / micro).backward()  # the mean over the micro-batches, as one batch would have it
                routings.append(out.routing)
            if optimizer is not None:
                if synced is not None and phase == E_STEP:
                    distributed.average_gradients(router_params, world.size)
                torch.nn.utils.clip_grad_norm_(list(trainable.values()), settings.grad_clip)
                optimizer.step()
                for i, router in enumerate(routers):
                    if router.training:  # once per optimizer step, with every micro-batch's routing
                        router.update([layers[i] for layers in routings])
        state.step = step + 1
        evaluating = state.step % settings.eval_every == 0 or state.step == settings.steps
        saving = checkpoint and state.step % settings.checkpoint_every == 0 and state.step < settings.steps
        if evaluating or saving:  # nothing non-finite is evaluated or saved
            state.train_losses += read_losses(pending, micro, world, desc)
            pending = []
        if evaluating:
            row = {"step": state.step, "train_loss": float(np.mean(state.train_losses)), **evaluate_at(state.step)}
            state.history.append(row)
            events.evaluation(row, lr_at(step, settings) if optimizer else None)
            state.train_losses = []
            bar.set_postfix(train=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}", refresh=False)
        if saving:
            state.save(checkpoint, fingerprint, trainable, buffers, optimizer, batches, device, world)
    events.close()
    for row, selection in zip(state.history, state.routes):  # how much of the final routing each evaluation had
        row["saturation"] = saturation(selection, state.routes[-1])
    for p in trainable.values():
        p.requires_grad_(True)
    model.eval()
    return state.history
