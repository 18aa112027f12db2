"""Training mechanics shared by every experiment: E-step/M-step phases and the optimizer step."""
