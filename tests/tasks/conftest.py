"""Fixtures for the task tests: a throwaway workspace with the bundled example config,
fakepve, the tfstate server, and a workspace aimed at both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devenv.fakepve import FakePveServer
from devenv.state_server import StateServer
from devenv.workspace import HttpState, example_cluster, example_nodes
from tests.support import EXAMPLES
from tests.tasks.taskrun import TaskWorkspace


@pytest.fixture
def workspace(tmp_path: Path) -> TaskWorkspace:
    ws = TaskWorkspace(tmp_path)
    ws.cluster.write_text(EXAMPLES.joinpath("cluster.yaml").read_text())
    ws.nodes.write_text(EXAMPLES.joinpath("nodes.yaml").read_text())
    return ws


@pytest.fixture
def pve() -> Iterator[FakePveServer]:
    with FakePveServer(time_scale=1.0) as server:  # 1.0: injected latency is real time
        yield server


@pytest.fixture
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpState]:
    with StateServer(tmp_path_factory.mktemp("tfstate")) as http_state:
        yield http_state


@pytest.fixture
def live(tmp_path: Path, pve: FakePveServer, state: HttpState) -> TaskWorkspace:
    """A workspace aimed at fakepve and the state server, credentials in cluster.yaml."""
    ws = TaskWorkspace(tmp_path)
    cluster = example_cluster()
    cluster.update(
        proxmox_api_url=pve.url,
        proxmox_insecure=True,
        tfstate_url=state.url,
        tfstate_username=state.username,
        tfstate_password=state.password,
        proxmox_api_token_id=pve.token_id,
        proxmox_api_token_secret=pve.token_secret,
    )
    ws.cluster.write_text(yaml.safe_dump(cluster, sort_keys=False))
    ws.nodes.write_text(yaml.safe_dump({"nodes": example_nodes()}, sort_keys=False))
    ws.secrets = [state.password, pve.token_secret]  # type: ignore[attr-defined]
    return ws
