"""mtx: a JAX/Flax training stack for symbolic-music transformers."""

__version__ = "0.1.0"
