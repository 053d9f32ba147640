"""The product never imports devenv/ (the test and demo harness).

Every module of the app, the workflow and the tfstate server imports with `devenv` made
unimportable, and the non-demo tasks run with it unimportable too: a `sitecustomize` on
PYTHONPATH installs a finder that refuses `devenv` in every Python the tasks start. Only
`python -m workflow demo` may import devenv (lazily, inside the demo).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devenv.fakepve import FakePveServer
from tests.support import EXAMPLES, ROOT
from tests.tasks.taskrun import TaskWorkspace

BLOCKER = '''\
import sys


class _NoDevenv:
    """Refuse devenv: what the product imports must not need the test harness."""

    def find_spec(self, name, path=None, target=None):
        if name == "devenv" or name.startswith("devenv."):
            raise ImportError(f"devenv is unimportable in this test (imported: {name})")
        return None


sys.meta_path.insert(0, _NoDevenv())
'''

PRODUCT_PACKAGES = ("workflow", "config", "constructs_lib", "stacks", "tfstate_server", "cdktf_runtime")
PRODUCT_MODULES = ("main", "exit_codes", "output_dir", "workflow.cli", "tfstate_server.cli")

IMPORT_ALL = f"""
import importlib, pkgutil, sys
for name in {PRODUCT_MODULES!r}:
    importlib.import_module(name)
count = len({PRODUCT_MODULES!r})
for pkg in {PRODUCT_PACKAGES!r}:
    module = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(module.__path__, pkg + "."):
        if info.name.rsplit(".", 1)[-1] != "__main__":  # importing it runs the command
            importlib.import_module(info.name)
            count += 1
loaded = sorted(m for m in sys.modules if m == "devenv" or m.startswith("devenv."))
assert not loaded, loaded
print(count)
"""


@pytest.fixture
def blocker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("no-devenv")
    (site / "sitecustomize.py").write_text(BLOCKER)
    return site


def blocked_env(blocker: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(blocker), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}


def test_the_blocker_makes_devenv_unimportable(blocker: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import devenv.workspace"],
        cwd=ROOT,
        env=blocked_env(blocker),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "devenv is unimportable in this test (imported: devenv" in proc.stderr


def test_every_product_module_imports_without_devenv(blocker: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL],
        cwd=ROOT,
        env=blocked_env(blocker),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) > 20  # the walk found the packages' modules


def test_non_demo_tasks_run_without_devenv(tmp_path: Path, blocker: Path) -> None:
    """synth, configure (sops and age), validate, plan (its preflight against a fakepve
    this test runs) and output on a local state."""
    ws = TaskWorkspace(tmp_path, extra_env={"PYTHONPATH": str(blocker)})
    with FakePveServer() as pve:
        pve.wait_ready()
        cluster = yaml.safe_load(EXAMPLES.joinpath("cluster.yaml").read_text())
        cluster.update(
            proxmox_api_url=f"{pve.url}/api2/json",
            proxmox_insecure=True,
            tfstate_password="state-pw",
            proxmox_api_token_id=pve.token_id,
            proxmox_api_token_secret=pve.token_secret,
        )
        ws.cluster.write_text(yaml.safe_dump(cluster, sort_keys=False))
        _run_tasks(ws)


def _run_tasks(ws: TaskWorkspace) -> None:
    tmp_path = ws.root
    ws.nodes.write_text(EXAMPLES.joinpath("nodes.yaml").read_text())

    for args in (("synth",), ("configure",), ("infra:validate",), ("infra:plan",), ("infra:output",)):
        proc = ws.task(*args)
        assert "devenv" not in proc.stderr, "\n".join(ws.log)
        assert proc.returncode == 0, "\n".join(ws.log)
    assert (ws.stack_dir / "cdk.tf.json").is_file()
    assert "ENC[AES256_GCM" in (tmp_path / "secrets.sops.yaml").read_text()
    assert (ws.stack_dir / "tfplan").is_file()
    assert "Success! The configuration is valid." in ws.log[2]


def test_the_product_source_names_devenv_only_in_the_demo() -> None:
    """A static check beside the run-time one: `devenv` appears in no product module's
    imports except workflow/demo.py's, inside its function."""
    offenders = []
    files = [ROOT / "main.py", ROOT / "output_dir.py"]
    for pkg in PRODUCT_PACKAGES:
        files += sorted((ROOT / pkg).rglob("*.py"))
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("import devenv", "from devenv")):
                where = f"{path.relative_to(ROOT)}:{number}"
                if path.relative_to(ROOT).as_posix() != "workflow/demo.py" or not line.startswith(" "):
                    offenders.append(where)
    assert offenders == []
