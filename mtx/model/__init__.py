"""Flax NNX model: its checked configuration (`config.py`), embeddings, relative attention
with its cache (`attention/`), decoder, heads."""
