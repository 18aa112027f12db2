"""Checks of a workflow profile's resources that Snakemake cannot make: the SLURM profile ships with
placeholder partitions ("<gpu-partition>"), which sbatch would refuse only once jobs are submitted."""
from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"<[A-Za-z0-9 _-]+>")


def _placeholders(resources, where: str) -> list[str]:
    """'where.name: value' for every resource whose profile text is still a placeholder."""
    found = []
    for name, resource in (getattr(resources, "_args", None) or dict(resources or {})).items():
        raw = str(getattr(resource, "raw", resource))
        if PLACEHOLDER.search(raw):
            value = raw.strip("\"'")  # the profile's YAML quotes
            found.append(f"{where}.{name}: {value}")
    return found


def unset_placeholders(resource_settings) -> list[str]:
    """The placeholders a profile's default-resources and set-resources still hold (Snakemake's ResourceSettings)."""
    found = _placeholders(resource_settings.default_resources, "default-resources")
    for rule, resources in resource_settings.overwrite_resources.items():
        found += _placeholders(resources, f"set-resources.{rule}")
    return found


def placeholder_message(found: list[str]) -> str:
    return ("the workflow profile still holds placeholders; replace them with your cluster's values "
            "(`sinfo -s` lists the partitions):\n" + "\n".join(f"  {item}" for item in found))
