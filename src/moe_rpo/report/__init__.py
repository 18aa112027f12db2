"""HTML report pages rendered from generated files (claims, tables, figures, run records)."""
