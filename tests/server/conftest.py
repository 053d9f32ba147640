"""Fixtures for the tfstate server tests: real server, moto_server and tofu processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tfstate_harness import Moto, Paths, Server, running_moto, running_server

from devenv.seaweedfs import SeaweedFS, running_seaweedfs, seaweedfs_binary
from workflow.setup_tools import ToolsError, ensure_tools


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def tools_env() -> dict[str, str]:
    """PATH and TF_CLI_CONFIG_FILE with OpenTofu (the project's tool finder), and TOFU."""
    try:
        tools = ensure_tools()
    except ToolsError as exc:
        pytest.fail(f"the tofu binary these tests need is not available: {exc}")
    return {**tools.env, "TOFU": tools.tofu}


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    with running_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real S3 server: SeaweedFS's gateway (weed built by setup-tools --seaweedfs)."""
    workdir = tmp_path_factory.mktemp("seaweedfs")
    with running_seaweedfs(seaweedfs_binary(log=workdir / "setup-tools.log"), workdir) as server:
        yield server


def _store_url(kind: str, tmp_path: Path, moto: Moto | SeaweedFS | None) -> tuple[str, dict[str, str]]:
    if kind == "file":
        return (tmp_path / "store").as_uri(), {}
    assert moto is not None
    return f"s3://{moto.new_bucket()}/team/states", moto.env


# The S3 store on moto ("s3") and on SeaweedFS, a real S3 server.
S3_SERVERS = {"s3": "moto", "seaweedfs": "seaweedfs"}


@pytest.fixture(scope="module", params=["file", *S3_SERVERS])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, dict[str, str]]:
    """(URL, environment) of a new, empty store of each kind."""
    moto = request.getfixturevalue(S3_SERVERS[store_kind]) if store_kind in S3_SERVERS else None
    return _store_url(store_kind, tmp_path, moto)


@pytest.fixture(scope="module")
def server(
    store_kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    """One server per store kind for a whole module: tests use their own state names."""
    tmp = tmp_path_factory.mktemp(f"server-{store_kind}")
    moto = request.getfixturevalue(S3_SERVERS[store_kind]) if store_kind in S3_SERVERS else None
    url, env = _store_url(store_kind, tmp, moto)
    with running_server(url, tmp, **env) as running:
        yield running


@pytest.fixture
def own_server(store: tuple[str, dict[str, str]], tmp_path: Path) -> Iterator[Server]:
    """A server of its own, for tests that stop it or read its whole log."""
    url, env = store
    with running_server(url, tmp_path, **env) as running:
        yield running


@pytest.fixture
def p() -> Paths:
    return Paths(f"st-{uuid.uuid4().hex[:10]}")
