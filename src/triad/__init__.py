"""triad: three families of deep-learning models on one reproducible pipeline spine."""

__version__ = "0.1.0"
