"""Shared core of the toolkit: data, tokenizers, encoders, losses, metrics, config, registry.

Both :mod:`t2i` (generation) and :mod:`matching` (retrieval) build on this package and
never import each other.
"""
__version__ = "0.1.0"
