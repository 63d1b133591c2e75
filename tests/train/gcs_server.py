"""Google Cloud Storage's JSON API on localhost, for the bucket tests: gcp-storage-emulator,
with the generation headers Cloud Storage sends with a download (`x-goog-generation`,
`x-goog-metageneration`). TensorStore (Orbax's array writer) reads them to make its
conditional writes of an OCDBT manifest, and without them fails with "Malformed
StorageGeneration"; the emulator returns them only in an object's metadata.

    python tests/train/gcs_server.py PORT BUCKET
"""

from __future__ import annotations

import sys

from gcp_storage_emulator.handlers import objects

_download = objects.download


def _download_with_generation(request, response, storage, *args, **kwargs):
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
  except Exception:  # pylint: disable=broad-except  # the handler answers 404 itself
    obj = None
  if obj is not None:
    response["x-goog-generation"] = str(obj["generation"])
    response["x-goog-metageneration"] = str(obj["metageneration"])
  return _download(request, response, storage, *args, **kwargs)


# Before the server module is imported: its routing table keeps the handler functions.
objects.download = _download_with_generation

from gcp_storage_emulator.server import create_server  # noqa: E402

if __name__ == "__main__":
  port, bucket = int(sys.argv[1]), sys.argv[2]
  create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket).run()
