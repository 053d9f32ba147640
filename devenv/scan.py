"""Look for secret values in files, including inside zip archives (tofu's saved plans
are zip files whose members are compressed: a plain byte search would never see them)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path


def contents(path: Path) -> Iterable[tuple[str, bytes]]:
    """(name, bytes) of a file, or of every member when it is a zip archive."""
    data = path.read_bytes()
    yield str(path), data
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                yield f"{path}!{member}", archive.read(member)


def find_secrets(paths: Iterable[Path], secrets: Iterable[str]) -> list[str]:
    """Where any of the secrets occurs: `file` or `file!zip member`, with a secret prefix."""
    wanted = [s for s in secrets if s]
    hits = []
    for path in paths:
        if not path.is_file() or path.is_symlink():
            continue
        try:
            for name, data in contents(path):
                hits += [f"{name}: {s[:6]}..." for s in wanted if s.encode() in data]
        except OSError:
            continue
    return hits
