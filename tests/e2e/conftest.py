"""Fixtures of the end-to-end suite: the tools, a fakepve per module, workspaces.

The tools come from scripts/setup-tools, which the session calls itself (idempotent,
cached outside the repository; the first run on a machine builds tofu and the provider
from Go modules). If it cannot, the suite fails with its message: it never skips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devenv.fakepve import FakePveServer
from devenv.state_server import StateServer
from devenv.workspace import HttpState, TofuWorkspace, example_nodes
from workflow.setup_tools import Tools, ToolsError, ensure_tools

WorkspaceFactory = Callable[..., TofuWorkspace]


@pytest.fixture(scope="session")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Tools:
    log = tmp_path_factory.mktemp("tools") / "setup-tools.log"
    try:
        return ensure_tools(log=log)
    except ToolsError as exc:
        pytest.fail(
            f"the end-to-end tests need tofu and the bpg provider: {exc}\n"
            f"Run scripts/setup-tools yourself to see its progress (log: {log}).",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def state_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateServer]:
    """This project's tfstate server on loopback; every e2e workspace keeps its state there."""
    server = StateServer(tmp_path_factory.mktemp("tfstate"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def http_state(state_server: StateServer) -> HttpState:
    return state_server.state


@pytest.fixture(scope="module")
def pve() -> Iterator[FakePveServer]:
    """One fakepve per test module (time scale 0: tasks finish at once)."""
    server = FakePveServer()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def server() -> Iterator[FakePveServer]:
    """A fakepve of the test's own, for tests that change or empty it."""
    srv = FakePveServer()
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


HOSTS = ["pve1", "pve2", "pve3"]


@pytest.fixture
def cluster_pve() -> Iterator[FakePveServer]:
    """A fakepve of three hosts, pve1 (fakepve's own), pve2 and pve3."""
    srv = FakePveServer()
    try:
        srv.wait_ready()
        srv.call(lambda p: [p.add_host(h) for h in HOSTS[1:]])
        yield srv
    finally:
        srv.stop()


def guest_addresses(nodes: list[dict]) -> dict[str, str]:
    """MAC -> node address, for the simulated guest agent."""
    return {str(n["mac_addr"]).lower(): str(n["address"]) for n in nodes}


@pytest.fixture
def make_workspace(
    tmp_path: Path, tools: Tools, http_state: HttpState, request: pytest.FixtureRequest
) -> WorkspaceFactory:
    """TofuWorkspace(s) under this test's tmp_path, state in the state server under a name
    unique to the test."""
    count = 0

    def make(pve: FakePveServer, name: str = "ws") -> TofuWorkspace:
        nonlocal count
        count += 1
        state_name = f"{request.node.name}-{count}".replace("[", "-").replace("]", "")
        state_name = "".join(c if c.isalnum() or c in "._-" else "-" for c in state_name)[:100]
        pve.call(lambda p: p.guest_addresses.update(guest_addresses(example_nodes())))
        return TofuWorkspace(tmp_path / name, tools, pve, state=http_state, state_name=state_name)

    return make
