"""A complete head in four small files: fit a line y = slope * x + intercept to noisy points.

It is what docs/adding-a-head.md walks through, and what a test in tests/spine/test_pipeline_flow.py
(``test_a_new_head_runs_through_the_pipeline_and_is_served``) copies into a fresh project and runs
through the whole pipeline (DVC, Lightning, MLflow, Prefect).
"""
