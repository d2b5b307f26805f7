"""Workloads Assay tunes and dispatches as jobs (flow matching and friends)."""
