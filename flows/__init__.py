"""Prefect flows of triad."""
