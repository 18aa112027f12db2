"""GPT-2 with optional mixture-of-experts layers, its checkpoints, and the routing-recovery models."""
from moe_rpo.models.checkpoint import from_hf, load_gpt, save_gpt
from moe_rpo.models.distractors import recovery_model
from moe_rpo.models.gpt import GPT, GPTConfig, GPTOutput
from moe_rpo.models.moe import MoE

__all__ = ["GPT", "GPTConfig", "GPTOutput", "MoE", "from_hf", "load_gpt", "recovery_model", "save_gpt"]
