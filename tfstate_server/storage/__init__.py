"""Opening a store from a --store URL."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from tfstate_server.storage.base import Store

DEFAULT_STORE = "file:.state/tfstate"


class StoreURLError(ValueError):
    pass


def open_store(url: str, *, keep_versions: int, sync_state: bool = True, sync_locks: bool = True) -> Store:
    parts = urllib.parse.urlsplit(url)
    if parts.query or parts.fragment:
        raise StoreURLError(f"--store {url!r}: no query or fragment allowed")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StoreURLError(f"--store {url!r}: use file:///absolute/path or file:relative/path")
        path = urllib.parse.unquote(parts.path)
        if not path:
            raise StoreURLError(f"--store {url!r}: no directory given")
        from tfstate_server.storage.file import FileStore

        return FileStore(
            Path(path).absolute(),
            keep_versions=keep_versions,
            sync_state=sync_state,
            sync_locks=sync_locks,
        )
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StoreURLError(f"--store {url!r}: expected s3://bucket/prefix")
        from tfstate_server.storage.s3 import S3Store

        return S3Store(parts.netloc, parts.path.lstrip("/"), keep_versions=keep_versions)
    raise StoreURLError(f"--store {url!r}: expected a file:// or s3:// URL")
