"""Sampling: restore a trained run, constrain each row to what the representation can
decode, and decode batches with the model's KV cache (`mtx-sample`)."""
