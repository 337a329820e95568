"""A complete head in four small files: fit a line y = slope * x + intercept to noisy points.

It is what docs/adding-a-head.md walks through, and what tests/spine/test_adding_a_head.py copies
into a fresh project and runs through the whole pipeline (DVC, Lightning, MLflow, Prefect).
"""
