"""Flax NNX model: embeddings, relative attention with its cache, decoder, heads."""
