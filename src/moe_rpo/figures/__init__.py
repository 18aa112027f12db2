"""Figures of the toy experiments, drawn from saved arrays and tables only (no training here)."""
