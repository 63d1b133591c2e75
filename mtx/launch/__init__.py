"""What `mtx-launch` writes: job files for SLURM (slurm.py), Cloud TPU (tpu.py) and
Kubernetes (k8s.py) from the templates in launch/, and the checks they share (common.py)."""
