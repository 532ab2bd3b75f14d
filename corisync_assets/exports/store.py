"""Where exports are written: a local folder (local mode) or a GCS bucket (prod), by URI."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dagster import ConfigurableResource


class ExportStore(ConfigurableResource):
    """``uri`` is a folder path or ``gs://bucket/prefix``; :meth:`write` replaces an object whole, so a reader
    (the dashboard page, a browser) never sees half a file."""

    uri: str

    def write(self, name: str, data: bytes, content_type: str = "application/json") -> str:
        """Write ``data`` as ``name``; return where it went (a path or a gs:// URI)."""
        if self.uri.startswith("gs://"):
            return self._write_gcs(name, data, content_type)
        folder = Path(self.uri)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / name)  # atomic on one file system
        return str(folder / name)

    def _write_gcs(self, name: str, data: bytes, content_type: str) -> str:
        bucket_name, _, prefix = self.uri.removeprefix("gs://").partition("/")
        if not bucket_name:
            raise ValueError(f"CORISYNC_EXPORTS_URI {self.uri!r} names no bucket (expected gs://bucket/prefix)")
        blob_name = f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name
        blob = self._gcs_client().bucket(bucket_name).blob(blob_name)
        blob.cache_control = "no-cache"  # the page must see the latest export
        blob.upload_from_string(data, content_type=content_type, timeout=60)  # one object: atomic in GCS
        return f"gs://{bucket_name}/{blob_name}"

    def _gcs_client(self):
        from google.cloud import storage

        return storage.Client()
