"""GPT weights on disk: Hugging Face GPT-2 checkpoints, and our own (config + state_dict)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from moe_rpo.io import atomic_path
from moe_rpo.models.gpt import GPT, GPTConfig

# Hugging Face GPT-2 stores these as Conv1D weights [in, out]; nn.Linear wants [out, in].
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# GPT-2 settings our GPT implements; a checkpoint with other values is refused. Our GPT ties the output
# head to the token embedding, as GPT-2 does: an untied head (tie_word_embeddings=False) would be lost.
HF_SETTINGS = {"activation_function": "gelu_new", "n_inner": None, "layer_norm_epsilon": 1e-5,
               "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False,
               "tie_word_embeddings": True}


def from_hf(name_or_path: str | Path, dropout: float = 0.0, vocab_multiple: int = 1) -> GPT:
    """A dense GPT with the weights of a Hugging Face GPT-2 checkpoint (a local directory or a cached
    hub name such as "gpt2"); with vocab_multiple, its token embedding padded to a multiple of it (the padding
    rows keep their initialisation: no token has them, and their logits are dropped)."""
    from transformers import GPT2LMHeadModel  # slow import: only when needed

    try:
        hf = GPT2LMHeadModel.from_pretrained(name_or_path)
    except OSError as error:  # no such directory, not a saved model, or not in the cache (offline)
        raise ValueError(f"cannot load a GPT-2 checkpoint from {str(name_or_path)!r}: it is neither a directory "
                         f"written by save_pretrained nor a model in the Hugging Face cache "
                         f"({(str(error).splitlines() or [''])[0]})") from None
    unsupported = {key: getattr(hf.config, key, None) for key, value in HF_SETTINGS.items()
                   if getattr(hf.config, key, None) != value}
    if unsupported:
        raise ValueError(f"{name_or_path}: GPT-2 settings {unsupported} are not supported (need {HF_SETTINGS})")
    config = GPTConfig(vocab_size=hf.config.vocab_size, block_size=hf.config.n_positions, n_layer=hf.config.n_layer,
                       n_head=hf.config.n_head, n_embd=hf.config.n_embd, dropout=dropout, bias=True,
                       vocab_multiple=vocab_multiple)
    model = GPT(config)
    ours, theirs = model.state_dict(), hf.state_dict()
    if set(ours) != set(theirs):
        raise ValueError(f"{name_or_path}: parameter names differ: only ours {sorted(set(ours) - set(theirs))}, "
                         f"only theirs {sorted(set(theirs) - set(ours))}")
    with torch.no_grad():
        for name, tensor in theirs.items():
            tensor = tensor.t() if name.endswith(CONV1D_WEIGHTS) else tensor
            ours[name][:len(tensor)].copy_(tensor)  # the embedding and head: the vocabulary's rows, before any padding
    return model


def save_gpt(model: GPT, path: str | Path) -> None:
    """Write config and weights atomically (a killed job leaves no partial checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save({"config": asdict(model.config), "model": model.state_dict()}, tmp)


def load_gpt(path: str | Path, device: str | torch.device = "cpu") -> GPT:
    """The GPT written by save_gpt. Every parameter is trainable again: freezing is the caller's choice."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"missing model file: {path}") from None
    except Exception as error:  # noqa: BLE001  (truncated or corrupt: torch raises several kinds)
        raise ValueError(f"{path} is not a readable model file (truncated or corrupt: {type(error).__name__}); "
                         f"delete it and rerun, and the job that writes it runs again") from None
    model = GPT(GPTConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["model"])
    return model.to(device)
