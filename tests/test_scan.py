"""The secret scan the end-to-end tests rely on finds secrets inside zip members too
(tofu's saved plans are zip archives with compressed members)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from devenv.scan import find_secrets

SECRET = "needle-7c1d2e3f4a5b"


def test_finds_a_secret_in_a_plain_file_and_in_a_compressed_zip_member(tmp_path: Path) -> None:
    plain = tmp_path / "log.txt"
    plain.write_text(f"token={SECRET}\n")
    plan = tmp_path / "tfplan"
    with zipfile.ZipFile(plan, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tfplan", ("x" * 1000 + SECRET) * 20)
    assert SECRET.encode() not in plan.read_bytes()  # a raw byte search would miss it
    hits = find_secrets([plain, plan, tmp_path / "missing"], [SECRET])
    assert hits == [f"{plain}: needle...", f"{plan}!tfplan: needle..."]


def test_clean_files_give_no_hits(tmp_path: Path) -> None:
    clean = tmp_path / "clean.json"
    clean.write_text("{}")
    assert find_secrets([clean], [SECRET, ""]) == []
