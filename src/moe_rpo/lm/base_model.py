"""The dense GPT that plays GPT-2's part: pretrained on a prepared corpus (the offline default) or
loaded from a Hugging Face GPT-2 checkpoint (the paper config: `gpt2`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from moe_rpo.data.tokens import corpus_identity, open_tokens, read_meta
from moe_rpo.models import GPT, GPTConfig, from_hf
from moe_rpo.training.evaluation import evaluate
from moe_rpo.training.loop import train_lm
from moe_rpo.training.resume import fingerprint
from moe_rpo.training.settings import TrainSettings


def check_vocabulary(model: GPT, corpus_dir: str | Path) -> None:
    """Refuse a corpus whose token ids the model cannot embed."""
    vocab = read_meta(corpus_dir)["vocab_size"]
    if vocab > model.config.vocab_size:
        raise ValueError(f"the corpus at {corpus_dir} has {vocab} token ids but the model embeds only "
                         f"{model.config.vocab_size}; use a corpus made with the model's tokenizer")


@dataclass(frozen=True)
class BaseModelSettings:
    """What the base-model job runs with (job_kinds.BASE_MODEL's slice: the base_model section), typed once."""
    source: str
    """'pretrain' (trained here on `corpus`) or 'huggingface' (GPT2LMHeadModel.from_pretrained(hf_name))"""
    hf_name: str
    """a Hub name or a local directory of a GPT-2 checkpoint (source: huggingface)"""
    corpus: str
    """the corpus it is pretrained and evaluated on"""
    model: dict
    """the GPT's shape when pretrained (GPTConfig's fields but the vocabulary); a loaded GPT-2 takes only its
    vocab_multiple"""
    seed: int
    """the seed of its initialisation and batches"""
    train: TrainSettings
    """how it trains, and its evaluation windows"""

    @classmethod
    def of(cls, settings: dict) -> BaseModelSettings:
        return cls(**{**settings, "train": TrainSettings.of(settings["train"])})


def build_base(settings: dict, corpus_dir: str | Path, checkpoint: str | Path | None = None,
               events_dir: str | Path | None = None) -> tuple[GPT, dict]:
    """(the base model, its record: source, size, validation loss, training curve); with `events_dir`, its training
    writes TensorBoard events there."""
    job = BaseModelSettings.of(settings)
    train = job.train
    train_tokens, val_tokens = open_tokens(corpus_dir, "train"), open_tokens(corpus_dir, "val")
    if job.source == "huggingface":
        try:
            model = from_hf(job.hf_name, vocab_multiple=job.model["vocab_multiple"])
        except ValueError as error:
            raise ValueError(f"base_model.hf_name: {error}") from None
        check_vocabulary(model, corpus_dir)
        history = []
    else:
        vocab = read_meta(corpus_dir)["vocab_size"]
        torch.manual_seed(job.seed)
        model = GPT(GPTConfig(vocab_size=vocab, **job.model))
        history = train_lm(model, train_tokens, val_tokens, train, job.seed, checkpoint=checkpoint,
                           fingerprint=fingerprint(settings=settings, data=corpus_identity(corpus_dir)),
                           desc="pretrain base model", events_dir=events_dir)
    final = evaluate(model, val_tokens, train, train.torch_device)
    record = {"source": job.source, "config": asdict(model.config),
              "parameters": sum(p.numel() for p in model.parameters()), "val_loss": final["val_loss"],
              "history": history}
    return model.cpu(), record
