"""Language-model experiments: the base model (pretrained here or loaded from Hugging Face) and the
GPT-2 optimal-routing recovery experiment (DIFF/SIM)."""
