"""Fixtures for the task tests: a throwaway workspace with the bundled example config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tasks.taskrun import EXAMPLES, TaskWorkspace


@pytest.fixture
def workspace(tmp_path: Path) -> TaskWorkspace:
    ws = TaskWorkspace(tmp_path)
    ws.cluster.write_text(EXAMPLES.joinpath("cluster.yaml").read_text())
    ws.nodes.write_text(EXAMPLES.joinpath("nodes.yaml").read_text())
    return ws
