"""GPT-2 in the style of nanoGPT, whose blocks hold either a dense MLP or an MoE layer."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from moe_rpo.models.experts import Experts
from moe_rpo.models.moe import MoE
from moe_rpo.routers import Router, RouterOutput, build_router


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    # the embedding and output head get vocab_size rounded up to a multiple of this (nanoGPT: GPT-2's 50257 -> 50304),
    # so that the output matmuls take aligned GPU kernels; the padded logits are dropped before anything reads them
    vocab_multiple: int = 1
    # Mixture of experts: the blocks in moe_layers replace their MLP by num_experts MLPs and a router
    # (a build_router spec) that sends each token to k of them.
    moe_layers: tuple[int, ...] = ()
    num_experts: int = 4
    k: int = 1
    router: dict = field(default_factory=lambda: {"method": "softmax_topk"})
    # DeepSeekMoE: each expert split into `granularity` experts of that fraction of the hidden width, each token
    # routed to granularity * k of them (same FLOPs); `shared_experts` always-on experts of the split size
    granularity: int = 1
    shared_experts: int = 0

    @property
    def padded_vocab_size(self) -> int:
        """The rows of the embedding and output head: vocab_size rounded up to a multiple of vocab_multiple."""
        return math.ceil(self.vocab_size / self.vocab_multiple) * self.vocab_multiple


@dataclass
class GPTOutput:
    """logits [B, T, vocab]; with targets, the mean loss and the per-token loss [B*T] (the reward
    signal of sampling routers); the RouterOutput of every MoE layer, in layer order."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    token_loss: torch.Tensor | None = None
    routing: list[RouterOutput] = field(default_factory=list)


class CausalSelfAttention(nn.Module):

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.c_attn(x).split(self.n_embd, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config: GPTConfig, hidden: int | None = None):
        """hidden: the hidden width (default 4 * n_embd; a fine-grained or shared expert's is smaller)."""
        super().__init__()
        hidden = 4 * config.n_embd if hidden is None else hidden
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Attention then a feed-forward layer: a dense MLP, or an MoE layer when `moe` is set."""

    def __init__(self, config: GPTConfig, moe: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        if moe:
            m = config.granularity
            if (4 * config.n_embd) % m:
                raise ValueError(f"granularity={m} must divide the MLP's hidden width 4 * n_embd = {4 * config.n_embd}")
            hidden = 4 * config.n_embd // m
            experts = [MLP(config, hidden) for _ in range(config.num_experts * m)]
            router = build_router(config.router, config.n_embd, config.num_experts * m, config.k * m)
            # n shared experts of the split size are one MLP n times as wide (the same function)
            shared = MLP(config, hidden * config.shared_experts) if config.shared_experts else None
            self.mlp = MoE(experts, router, shared)
        else:
            self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, RouterOutput | None]:
        x = x + self.attn(self.ln_1(x))
        if isinstance(self.mlp, MoE):
            y, routing = self.mlp(self.ln_2(x), idx)
        else:
            y, routing = self.mlp(self.ln_2(x)), None
        return x + y, routing


class GPT(nn.Module):

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd={config.n_embd} must be divisible by n_head={config.n_head}")
        bad = [i for i in config.moe_layers if not 0 <= i < config.n_layer]
        if bad:
            raise ValueError(f"moe_layers {bad} out of range for n_layer={config.n_layer}")
        self.config = config
        rows = config.padded_vocab_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(rows, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, moe=i in config.moe_layers) for i in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, rows, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        init_gpt2_(self, config.n_layer)

    def routers(self) -> list[Router]:
        """The routers of the MoE layers, in layer order (matching GPTOutput.routing)."""
        return [block.mlp.router for block in self.transformer.h if isinstance(block.mlp, MoE)]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> GPTOutput:
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size={self.config.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        routing = []
        for block in self.transformer.h:
            x, block_routing = block(x, idx)
            if block_routing is not None:
                routing.append(block_routing)
        logits = self.lm_head(self.transformer.ln_f(x))[..., :self.config.vocab_size]  # without the padding rows
        if targets is None:
            return GPTOutput(logits, routing=routing)
        token_loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T), reduction="none")
        return GPTOutput(logits, token_loss.mean(), token_loss, routing)


def init_gpt2_(module: nn.Module, n_layer: int, std: float = 0.02) -> None:
    """GPT-2's initialisation, in place: N(0, 0.02) for Linear and Embedding weights, zero biases, and
    N(0, 0.02 / sqrt(2 * n_layer)) for the residual projections (c_proj). Routers keep their own init."""
    if isinstance(module, Router):
        return
    if isinstance(module, Experts):  # drawn expert by expert, in the order E separate MLPs would draw them
        with torch.no_grad():
            for c_fc, c_proj in zip(module.c_fc, module.c_proj):
                c_fc.normal_(0.0, std)
                c_proj.normal_(0.0, 0.02 / math.sqrt(2 * n_layer))
            for bias in (module.c_fc_bias, module.c_proj_bias):
                if bias is not None:
                    bias.zero_()
        return
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    for name, child in module.named_children():
        init_gpt2_(child, n_layer, 0.02 / math.sqrt(2 * n_layer) if name == "c_proj" else 0.02)
