"""The diffusion head."""
