"""The dense GPT that plays GPT-2's part: pretrained on a prepared corpus (the offline default) or
loaded from a Hugging Face GPT-2 checkpoint (the paper config: `gpt2`)."""
from __future__ import annotations

from dataclasses import asdict
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


def build_base(settings: dict, corpus_dir: str | Path, checkpoint: str | Path | None = None,
               events_dir: str | Path | None = None) -> tuple[GPT, dict]:
    """(the base model, its record: source, size, validation loss, training curve); with `events_dir`, its training
    writes TensorBoard events there."""
    train_tokens, val_tokens = open_tokens(corpus_dir, "train"), open_tokens(corpus_dir, "val")
    train = TrainSettings.of(settings["train"])
    if settings["source"] == "huggingface":
        try:
            model = from_hf(settings["hf_name"], vocab_multiple=settings["model"]["vocab_multiple"])
        except ValueError as error:
            raise ValueError(f"base_model.hf_name: {error}") from None
        check_vocabulary(model, corpus_dir)
        history = []
    else:
        vocab = read_meta(corpus_dir)["vocab_size"]
        torch.manual_seed(settings["seed"])
        model = GPT(GPTConfig(vocab_size=vocab, **settings["model"]))
        history = train_lm(model, train_tokens, val_tokens, train, settings["seed"], checkpoint=checkpoint,
                           fingerprint=fingerprint(settings=settings, data=corpus_identity(corpus_dir)),
                           desc="pretrain base model", events_dir=events_dir)
    final = evaluate(model, val_tokens, train, train.torch_device)
    record = {"source": settings["source"], "config": asdict(model.config),
              "parameters": sum(p.numel() for p in model.parameters()), "val_loss": final["val_loss"],
              "history": history}
    return model.cpu(), record
