"""Training: configs checked up front, a device mesh, the sharded step, Orbax
checkpoints with exact resume, and the loop that `mtx-train` runs."""
