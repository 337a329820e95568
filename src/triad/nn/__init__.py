"""Pieces every head's network code shares: the learning-rate schedule and saving a network for serving."""
