r"""`mtx-launch`: the job files that run mtx on a cluster, from flags.

    mtx-launch slurm --config=configs/mmt_lmd.py --workdir=/shared/runs/lmd \
        --nodes=4 --gpus_per_node=8 --partition=gpu --time=2-00:00:00 \
        --output=lmd.sbatch -- --config.data.data_dir=/shared/data
    mtx-launch slurm --template=prepare --dataset=lmd --manual_dir=/shared/lmd \
        --data_dir=/shared/data --cpus_per_task=64
    mtx-launch tpu create|status|setup|logs|stop|delete --tpu_name=NAME \
        --tpu_type=v5litepod-16 --gcp_zone=ZONE [--gcp_project=P] [--dry_run]
    mtx-launch tpu run --tpu_name=NAME --tpu_type=v5litepod-16 --gcp_zone=ZONE \
        --config=configs/NAME.py --workdir=gs://bucket/runs/NAME -- MTX_TRAIN_FLAGS
    mtx-launch k8s --kind=jobset|job --accelerator=cpu|gpu|tpu --image=IMAGE \
        --config=configs/NAME.py --workdir=gs://bucket/runs/NAME --nodes=N ...

`slurm` fills a batch script of launch/slurm/, `k8s` a manifest of launch/k8s/, `tpu` runs
(or with --dry_run prints) the gcloud commands of launch/tpu/. Flags after `--` go to the
binary the job runs. launch/README.md says how to watch, stop and resume each kind of job.
Bad input (a config that does not exist, a node count the config's mesh or batch does not
divide over, a missing image) exits with status 2 and one line.
"""

from __future__ import annotations

from mtx.cli.app import run as run_app
from mtx.errors import ConfigError
from mtx.launch import common, k8s, slurm, tpu

# The modules whose flags `--help` lists beside this one's (mtx/cli/app.py).
HELP_FLAG_MODULES = (common.__name__, slurm.__name__, tpu.__name__, k8s.__name__)
TARGETS = {"slurm": slurm.main, "tpu": tpu.main, "k8s": k8s.main}


def main(argv: list[str]) -> None:
  if len(argv) < 2 or argv[1] not in TARGETS:
    raise ConfigError(
      f"usage: mtx-launch {'|'.join(TARGETS)} --config=configs/NAME.py --workdir=DIR ... "
      "(launch/README.md)"
    )
  TARGETS[argv[1]](argv[2:])


def run() -> None:
  run_app(main)


if __name__ == "__main__":
  run()
