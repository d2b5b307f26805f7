"""Persistence: the store interface and its backends (in-memory; SQL in a later issue)."""
