"""Replication pipeline for "Peculiarities of Mixture-of-Expert Optimization" and Router Policy Optimization (RPO)."""

__version__ = "0.1.0"
