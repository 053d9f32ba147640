"""Fixtures for the synthesis tests (helpers live in tests/support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import EXAMPLES, ConfigDir


@pytest.fixture
def config_dir(tmp_path: Path) -> ConfigDir:
    return ConfigDir(tmp_path)


@pytest.fixture
def example_dir(tmp_path: Path) -> ConfigDir:
    d = ConfigDir(tmp_path)
    d.write(EXAMPLES.joinpath("cluster.yaml").read_text(), EXAMPLES.joinpath("nodes.yaml").read_text())
    return d
