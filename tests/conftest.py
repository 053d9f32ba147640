"""Fixtures for the synthesis tests (helpers live in tests/support.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# Before the import: its checks then explain a failure like a test's own asserts.
pytest.register_assert_rewrite("tests.rejects")

from tests.rejects import CLUSTER, NODES, BadInput  # noqa: E402
from tests.support import EXAMPLES, ConfigDir  # noqa: E402


@pytest.fixture
def config_dir(tmp_path: Path) -> ConfigDir:
    return ConfigDir(tmp_path)


@pytest.fixture
def example_dir(tmp_path: Path) -> ConfigDir:
    d = ConfigDir(tmp_path)
    d.write(EXAMPLES.joinpath("cluster.yaml").read_text(), EXAMPLES.joinpath("nodes.yaml").read_text())
    return d


@pytest.fixture(scope="session")
def previous_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cdktf.out synthesized from good input once, copied into each case's directory."""
    d = ConfigDir(tmp_path_factory.mktemp("previous"))
    d.write(CLUSTER, NODES)
    d.synth()
    return d.outdir


@pytest.fixture
def bad(tmp_path: Path, previous_output: Path) -> BadInput:
    shutil.copytree(previous_output, tmp_path / "cdktf.out")
    return BadInput(tmp_path)
