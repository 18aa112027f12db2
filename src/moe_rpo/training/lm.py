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
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from moe_rpo.io import atomic_path
from moe_rpo.models import GPT
from moe_rpo.models.moe import routing_metrics
from moe_rpo.training import distributed
from moe_rpo.training.events import EventLog
from moe_rpo.training.step import E_STEP, JOINT, M_STEP, phases_at, set_phase

EVAL_SEED = 1234  # the evaluation windows are the same for every method and seed
STABILITY_TOKENS = 4096  # the evaluation tokens whose routes the stability metrics follow through training


def configure_torch(threads: int) -> None:
    """CPU threads, and deterministic kernels only, on a GPU as on the CPU: an op without a deterministic
    kernel raises. On an H200 (torch 2.11) every router's training step runs so and two runs repeat bit for
    bit (benchmarks/gpu_check.py checks both); attention then avoids cuDNN's non-deterministic backward."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed for deterministic cuBLAS
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)


def pick_device(name: str) -> torch.device:
    """'auto': the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no GPU is available (use device: auto or cpu)")
    return torch.device(name)


class Batches:
    """Random windows [batch, block] of a token array and their next-token targets, from a seeded generator
    whose state is part of a checkpoint (the data position). With `share` = (rank, processes), every rank
    draws the same global batch of `batch_size` windows and returns its contiguous share of the rows,
    rank * batch_size / processes up to (rank + 1) * batch_size / processes."""

    def __init__(self, tokens: np.ndarray, batch_size: int, block_size: int, seed: int,
                 share: tuple[int, int] = (0, 1)):
        check_window_fits(tokens, block_size)
        rank, processes = share
        if batch_size % processes:
            raise ValueError(f"batch_size={batch_size} (the global batch) is not divisible by the {processes} "
                             f"data-parallel processes; use a multiple of {processes}")
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        local = batch_size // processes
        self.rows = slice(rank * local, (rank + 1) * local)
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.tokens) - self.block_size - 1, (self.batch_size,), generator=self.generator)
        return windows(self.tokens, starts[self.rows].tolist(), self.block_size)


def check_window_fits(tokens: np.ndarray, block_size: int) -> None:
    """Refuse a token array shorter than one window and its next-token target, naming its file."""
    if len(tokens) <= block_size + 1:
        name = getattr(tokens, "filename", None) or "the token array"  # a memmap knows its file
        raise ValueError(f"{name} holds {len(tokens)} tokens, too few for one window of block_size={block_size} "
                         f"plus its target; use a larger split (val_fraction) or a smaller train.block_size")


def windows(tokens: np.ndarray, starts: list[int], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.stack([np.asarray(tokens[s:s + block_size + 1], dtype=np.int64) for s in starts])
    return torch.from_numpy(np.ascontiguousarray(rows[:, :-1])), torch.from_numpy(np.ascontiguousarray(rows[:, 1:]))


def to_device(batch: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """The batch on the device. To a GPU from pinned memory and without waiting: a plain copy would wait for
    the kernels already queued, a host sync every step."""
    if device.type != "cuda":
        return batch
    return tuple(t.pin_memory().to(device, non_blocking=True) for t in batch)


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


def lr_at(step: int, settings: dict) -> float:
    """Linear warm-up, then cosine decay from lr to min_lr_ratio * lr at the last step."""
    lr, steps, warmup = settings["lr"], settings["steps"], settings["warmup_steps"]
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (settings["min_lr_ratio"] + (1 - settings["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(params: dict[str, torch.nn.Parameter], settings: dict) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases and LayerNorm gains), as in nanoGPT. By name as
    well as shape: the stacked experts' biases ([E, H], models/experts.py) are matrices of biases."""
    decays = {name: p.dim() >= 2 and not name.endswith("bias") for name, p in params.items()}
    groups = [{"params": [p for name, p in params.items() if decays[name]], "weight_decay": settings["weight_decay"]},
              {"params": [p for name, p in params.items() if not decays[name]], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=settings["lr"], betas=tuple(settings["betas"]))


def evaluation_batches(tokens: np.ndarray, settings: dict) -> list[list[int]]:
    """The start offsets of the fixed evaluation windows, one list per batch: the same for every method and seed."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    count, block = settings["eval_batches"] * settings["batch_size"], settings["block_size"]
    check_window_fits(tokens, block)
    starts = torch.randint(len(tokens) - block - 1, (count,), generator=generator).tolist()
    return [starts[first:first + settings["batch_size"]] for first in range(0, count, settings["batch_size"])]


@torch.no_grad()
def evaluate(model: GPT, tokens: np.ndarray, settings: dict, device: torch.device,
             world: distributed.World | None = None, label: str = "evaluation", routes: bool = False,
             observers=()) -> dict:
    """Mean loss on fixed windows of `tokens` and, per MoE layer, the routing metrics (greedy routing).
    With `routes`, also "selection": [MoE layers, tokens, E] bool, the experts that the first STABILITY_TOKENS
    evaluation tokens were dispatched to (what the stability metrics compare between evaluations).
    Each of `observers` is called as observer(x, y, out) with each batch this process evaluates, on the device
    (more metrics from the same pass).
    With a data-parallel `world` (every rank must call it), the ranks share the evaluation batches and all
    return the numbers of one process."""
    model.eval()
    batches = evaluation_batches(tokens, settings)
    losses, layers, selections = [], [], []
    if world is not None and world.size > 1:
        batches = batches[world.rank::world.size]
    for starts in batches:
        x, y = (t.to(device) for t in windows(tokens, starts, settings["block_size"]))
        out = model(x, y)
        losses.append(out.loss.item())
        for observer in observers:
            observer(x, y, out)
        layers.append([routing_metrics(routing) for routing in out.routing])
        if routes and out.routing:
            selections.append(torch.stack([routing.selected() for routing in out.routing]).cpu())
    if world is not None and world.size > 1:  # back in batch order: rank r evaluated batches r, r + size, ...
        shares = distributed.gather((losses, layers, selections))
        losses, layers, selections = ([shares[i % world.size][part][i // world.size]
                                       for i in range(settings["eval_batches"]) if shares[i % world.size][part]]
                                      for part in range(3))
    result = {}
    if selections:
        result["selection"] = torch.cat(selections, dim=1)[:, :STABILITY_TOKENS]
    per_layer = [{key: np.mean([batch[i][key] for batch in layers], axis=0).tolist() for key in layers[0][i]}
                 for i in range(len(layers[0]))]
    if not np.isfinite(losses).all():  # e.g. the last step's update diverged: no such number may reach a record
        raise FloatingPointError(f"{label}: non-finite evaluation loss {losses}: the model's weights have diverged")
    return {"val_loss": float(np.mean(losses)), "layers": per_layer, **result}


def flip_rate(before: torch.Tensor, after: torch.Tensor) -> float:
    """Share of (MoE layer, token) pairs whose set of experts differs between two selections [L, N, E]."""
    return (before != after).any(-1).float().mean().item()


def saturation(selection: torch.Tensor, final: torch.Tensor) -> float:
    """Share of the final (token, expert) choices [L, N, E] that `selection` already makes (OLMoE's router
    saturation)."""
    return ((selection & final).sum() / final.sum().clamp(min=1)).item()


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


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a training checkpoint atomically (tensors and plain types only: read_checkpoint loads it safely)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: Path, device: torch.device, desc: str) -> dict | None:
    """A training checkpoint, or None (with a warning naming it) when it is unreadable. weights_only: the
    file holds tensors and plain types only, so a swapped file cannot run code when it is read."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        problem = None if isinstance(state, dict) and "fingerprint" in state else "not a training checkpoint"
    except Exception as error:  # noqa: BLE001  (truncated, corrupt or unsafe: any of them means start afresh)
        state, problem = None, f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    if problem:
        print(f"{desc}: ignoring the unreadable checkpoint {path} ({problem}); training from step 0", file=sys.stderr)
        return None
    return state


def tensors_problem(saved: dict, expected: dict) -> str | None:
    """What is wrong with a checkpoint's tensors against the model's (parameters or router buffers): a name the
    model lacks, another shape or dtype, or a NaN or infinity; None when they fit."""
    for name, value in saved.items():
        if name not in expected:
            return f"{name} is not in the model"
        target = expected[name]
        if not isinstance(value, torch.Tensor) or value.shape != target.shape or value.dtype != target.dtype:
            return (f"{name} is {getattr(value, 'dtype', type(value).__name__)} {list(getattr(value, 'shape', []))}, "
                    f"the model's {target.dtype} {list(target.shape)}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            return f"{name} holds a NaN or an infinity"
    return None


@dataclass
class TrainState:
    """Where a run stands: the steps done, the evaluation rows so far and the training losses since the last
    evaluation. A checkpoint holds it with the trainable parameters, the routers' buffers, the optimiser and the
    random streams (data position, torch's and CUDA's, each rank's), so that a restored run continues exactly."""
    step: int = 0
    history: list = field(default_factory=list)
    train_losses: list = field(default_factory=list)
    routes: list = field(default_factory=list)  # each evaluation's selection (evaluate(routes=True)) of an MoE model

    def save(self, path: Path, fingerprint: str, trainable: dict, buffers: dict, optimizer, batches: Batches,
             device: torch.device, world: distributed.World) -> None:
        rng = torch.get_rng_state(), torch.cuda.get_rng_state() if device.type == "cuda" else None
        rank_rngs = distributed.gather(rng) if world.size > 1 else None  # every rank takes part; rank 0 writes
        if world.rank == 0:
            save_checkpoint(path, {
                "fingerprint": fingerprint, "step": self.step, "history": self.history,
                "train_losses": self.train_losses, "routes": self.routes,
                "optimizer": optimizer.state_dict() if optimizer else None,
                "trainable": {name: p.detach().clone() for name, p in trainable.items()},
                "buffers": {name: b.clone() for name, b in buffers.items()},
                "data_rng": batches.generator.get_state(), "torch_rng": rng[0], "cuda_rng": rng[1],
                **({"rank_rngs": rank_rngs} if rank_rngs else {})})

    @classmethod
    def restore(cls, path: Path | None, fingerprint: str, trainable: dict, buffers: dict, optimizer, batches: Batches,
                seed: int, device: torch.device, world: distributed.World, desc: str) -> TrainState:
        """The saved state, loaded into the parameters, optimiser and streams, or a fresh one when there is no
        readable checkpoint made with the same fingerprint."""
        saved = read_checkpoint(path, device, desc) if path and path.is_file() else None
        if saved is None:
            return cls()
        if saved["fingerprint"] != fingerprint:
            if world.rank == 0:
                print(f"{desc}: ignoring {path} (made with other settings)", file=sys.stderr)
            return cls()
        problem = tensors_problem(saved["trainable"], trainable) or tensors_problem(saved.get("buffers", {}), buffers)
        if problem:  # a corrupt checkpoint: named, set aside, and the run starts afresh
            if world.rank == 0:
                print(f"{desc}: ignoring the corrupt checkpoint {path} ({problem}); training from step 0",
                      file=sys.stderr)
            return cls()
        with torch.no_grad():
            for name, value in saved["trainable"].items():
                trainable[name].copy_(value)
            for name, value in saved.get("buffers", {}).items():  # none in checkpoints of older versions
                buffers[name].copy_(value)
        if optimizer is not None:
            optimizer.load_state_dict(saved["optimizer"])
        batches.generator.set_state(saved["data_rng"])
        rng = saved["torch_rng"], saved.get("cuda_rng")
        if world.size > 1:  # each rank's own stream (from a run with another number of ranks: a fresh one)
            ranks = saved.get("rank_rngs")
            if ranks and len(ranks) == world.size:
                rng = ranks[world.rank]
            elif world.rank:
                rng = None, None
        if rng[0] is None:
            torch.manual_seed(distributed.rank_seed(seed, world.rank, saved["step"]))
        else:
            torch.set_rng_state(rng[0])
        if device.type == "cuda" and rng[1] is not None:
            torch.cuda.set_rng_state(rng[1])
        if world.rank == 0:
            print(f"{desc}: resumed from {path} at step {saved['step']}", file=sys.stderr)
        return cls(saved["step"], saved["history"], saved["train_losses"], saved.get("routes", []))


def token_counts(tokens: np.ndarray, vocab_size: int) -> torch.Tensor:
    """How often each token id occurs in `tokens` [vocab_size] (read in chunks: corpora are memory maps)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(tokens), 1 << 24):
        counts += np.bincount(np.asarray(tokens[start:start + (1 << 24)]), minlength=vocab_size)
    return torch.from_numpy(counts)


def fit_routers_to_corpus(model: GPT, train_tokens: np.ndarray) -> None:
    """Give the routers that balance by token frequency (balanced hashing) the training split's token
    counts; the corpus is counted only when one of them needs it."""
    routers = [router for router in model.routers() if router.uses_token_counts]
    if routers:
        counts = token_counts(train_tokens, model.config.vocab_size)
        for router in routers:
            router.fit_token_counts(counts)


def train_lm(model: GPT, train_tokens: np.ndarray, val_tokens: np.ndarray, settings: dict, seed: int,
             checkpoint: str | Path | None = None, fingerprint: str = "", desc: str = "train",
             events_dir: str | Path | None = None) -> list[dict]:
    """Train the parameters of `model` that require grad; return the evaluation rows (step 0, every
    eval_every steps, and the last step). For an MoE model each row also has the routes' stability: the flip
    rate since the previous evaluation and the saturation (the share of the final routing already chosen). With
    `checkpoint`, the state is saved every checkpoint_every steps and a run restarted with the same fingerprint
    continues exactly where the saved one stopped. With `events_dir`, each evaluation is also written as TensorBoard
    events there (events.py).

    Routers with an alternation train in E-steps and the other trainable parameters in M-steps (the
    frozen router then routes greedily). When only routers train, every step is an E-step. When nothing
    trains (a parameter-free router such as hashing in a frozen model), the steps only measure the losses.

    Under torchrun the ranks train data-parallel (see the module's docstring); `settings["batch_size"]`
    is the global batch, and every rank returns the same history. With grad_accum > 1 each rank's rows split into
    that many micro-batches whose gradients add up before the one optimizer step.
    """
    world, device = distributed.setup(pick_device(settings["device"]))
    model.to(device)
    torch.manual_seed(distributed.rank_seed(seed, world.rank))
    batches = Batches(train_tokens, settings["batch_size"], settings["block_size"], seed,
                      share=(world.rank, world.size))
    if (settings["batch_size"] // world.size) % settings["grad_accum"]:
        raise ValueError(f"batch_size={settings['batch_size']} gives {settings['batch_size'] // world.size} rows per "
                         f"process, which do not split into grad_accum={settings['grad_accum']} equal micro-batches")
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

    forward = torch.compile(model) if settings["compile"] else model
    synced = data_parallel(model, routers, router_params, other_params, alternation, device, settings) \
        if world.size > 1 and trainable else None
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if settings["bf16"] and device.type == "cuda"
                else contextlib.nullcontext())

    def evaluate_at(step: int) -> dict:
        """The evaluation row after `step`; for an MoE model with its routes' flip rate since the last one."""
        row = evaluate(model, val_tokens, settings, device, world, label=f"{desc}: evaluation after step {step}",
                       routes=True)
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
    bar = tqdm(range(state.step, settings["steps"]), desc=desc, total=settings["steps"], initial=state.step,
               file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 15, disable=world.rank != 0)
    for step in bar:
        for group in optimizer.param_groups if optimizer else ():
            group["lr"] = lr_at(step, settings)
        x, y = to_device(batches.next(), device)
        for phase in phases_at(step, alternation, settings["alternation"]):
            model.train()
            set_phase(routers, router_params, other_params, phase)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
            micro = settings["grad_accum"]
            routings = []  # per micro-batch: each MoE layer's routing
            for part, (mx, my) in enumerate(zip(x.chunk(micro), y.chunk(micro))):
                baseline = greedy_loss(model, routers, mx, my, autocast) if (
                    settings["reinforce_baseline"] == "greedy" and phase != M_STEP and any_samples(routers)) else None
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
                torch.nn.utils.clip_grad_norm_(list(trainable.values()), settings["grad_clip"])
                optimizer.step()
                for i, router in enumerate(routers):
                    if router.training:  # once per optimizer step, with every micro-batch's routing
                        router.update([layers[i] for layers in routings])
        state.step = step + 1
        evaluating = state.step % settings["eval_every"] == 0 or state.step == settings["steps"]
        saving = checkpoint and state.step % settings["checkpoint_every"] == 0 and state.step < settings["steps"]
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


def data_parallel(model: GPT, routers, router_params, other_params, alternation, device: torch.device,
                  settings: dict) -> torch.nn.Module:
    """The model wrapped in DistributedDataParallel, for the steps whose gradients it averages.

    DDP builds its reducer once, over the parameters that require grad when it is wrapped, and does not
    support a change of that set in the steps it runs; E/M alternation toggles requires_grad. So with an
    alternation DDP is built over the M-step's parameters (everything but the routers), with the
    requires_grad of an M-step, and runs only M-steps, which keep that set. E-steps call the bare model
    (DDP is not involved: its reducer expects gradients only after a forward through it) and train_lm
    averages their gradients, those of the small router parameters, with one all-reduce. Each step thus
    trains the same parameters on the averaged gradient of the global batch, as in one process, and
    E-steps skip the backward and the communication of the frozen experts (with RPO the whole backward
    through the network). Without an alternation DDP holds every trainable parameter and runs every step.

    find_unused_parameters: in an MoE model an expert that no token of a rank's rows chose gets no
    gradient on that rank (and a router can have parameters that a step does not use, or none at all);
    DDP then counts zeros for it, and a parameter unused on every rank keeps grad None, so that AdamW
    skips it (no momentum or weight-decay update) exactly as in one process. A dense model uses every
    parameter, so it skips the search for unused ones.
    """
    set_phase(routers, router_params, other_params, JOINT if alternation is None else M_STEP)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                  find_unused_parameters=bool(routers))
    return torch.compile(ddp) if settings["compile"] else ddp
