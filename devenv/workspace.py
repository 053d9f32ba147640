"""A directory with cluster.yaml + nodes.yaml aimed at a fakepve, synthesized and run
with the real tofu and bpg provider.

Secrets (the Proxmox token, the state password) reach tofu only through its
environment: never argv, never a file this module writes. Every command's output is
appended to `<root>/tofu.log` so a failing test can show it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devenv.fakepve import FakePveServer
from devenv.scan import find_secrets
from workflow.setup_tools import ROOT, Tools
from workflow.workspace import Workspace

EXAMPLES = ROOT / "examples"
TOFU_TIMEOUT = 300.0
SYNTH_TIMEOUT = 120.0


@dataclass(frozen=True)
class HttpState:
    """An HTTP state backend (this project's tfstate server): base URL and credentials."""

    url: str
    username: str
    password: str


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class CommandFailed(AssertionError):
    """A command ended with an exit code it was not expected to; carries its output."""


@dataclass
class PlanSummary:
    """The resource changes of a saved plan, from `tofu show -json`."""

    exitcode: int
    changes: list[dict[str, Any]] = field(default_factory=list)

    def actions(self) -> Counter[str]:
        """create / update / delete / replace / no-op counts, one per resource instance."""
        out: Counter[str] = Counter()
        for change in self.changes:
            out[action_name(change["change"]["actions"])] += 1
        return out

    def addresses(self, action: str) -> list[str]:
        return sorted(c["address"] for c in self.changes if action_name(c["change"]["actions"]) == action)

    def moves(self) -> dict[str, str]:
        """previous address -> new address for every moved instance."""
        return {c["previous_address"]: c["address"] for c in self.changes if c.get("previous_address")}


def action_name(actions: Sequence[str]) -> str:
    if list(actions) in (["delete", "create"], ["create", "delete"]):
        return "replace"
    return actions[0] if len(actions) == 1 else "+".join(actions)


def example_nodes() -> list[dict[str, Any]]:
    """The nodes of examples/nodes.yaml (3 controllers, 3 workers, 2 ISOs)."""
    return list(yaml.safe_load(EXAMPLES.joinpath("nodes.yaml").read_text())["nodes"])


def example_cluster() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLES.joinpath("cluster.yaml").read_text()))


# The rolling apply's nodes: a /24 of the loopback range chosen per run (fakepve's fake
# Talos APIs listen on port 50000 of each address), so two runs on one machine do not
# take each other's addresses.
LOOPBACK_NET = f"127.{secrets.randbelow(180) + 64}.{secrets.randbelow(256)}"


def loopback_nodes() -> list[dict[str, Any]]:
    """The example's 3 + 3 nodes on LOOPBACK_NET.x, every node sized by the role defaults:
    the rolling apply's health check probes their Talos port (fakepve's fake Talos API)
    and reaches nothing off this machine."""
    nodes = example_nodes()
    for node in nodes:
        node["address"] = f"{LOOPBACK_NET}." + str(node["address"]).rsplit(".", 1)[1]
        node.pop("vm_memory", None)
    return nodes


def loopback_cluster(proxmox_api_url: str, **overrides: Any) -> dict[str, Any]:
    """The example cluster on LOOPBACK_NET.0/24 (see loopback_nodes), against a fakepve."""
    cluster = example_cluster()
    cluster.update(
        node_cidr=f"{LOOPBACK_NET}.0/24",
        node_default_gateway=f"{LOOPBACK_NET}.1",
        cluster_api_addr=f"{LOOPBACK_NET}.100",
        cluster_dns_gateway_addr=f"{LOOPBACK_NET}.101",
        proxmox_api_url=proxmox_api_url,
        proxmox_insecure=True,
        **overrides,
    )
    return cluster


def prepare_rollout_fake(pve: FakePveServer, boot_secs: float) -> None:
    """A fakepve for the rolling apply: each loopback node's fake Talos API on its address,
    and shutdowns and starts that take `boot_secs` simulated seconds."""

    def setup(p: Any) -> None:
        p.talos_addresses.update({str(n["mac_addr"]).lower(): n["address"] for n in loopback_nodes()})
        p.boot_secs = boot_secs

    pve.call(setup)


class TofuWorkspace:
    """cluster.yaml + nodes.yaml for a fakepve, the synthesized stack, and tofu runs on it
    (tofu itself, and `python -m workflow` with the credentials in its environment)."""

    def __init__(
        self,
        root: Path,
        tools: Tools,
        pve: FakePveServer,
        *,
        state: HttpState | None = None,
        state_name: str = "proxmox",
    ) -> None:
        self.root = root
        self.tools = tools
        self.pve = pve
        self.state = state
        self.state_name = state_name
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = root / "tofu.log"

    # ----------------------------------------------------------------- config

    @property
    def paths(self) -> Workspace:
        """Its files at the product's default names."""
        return Workspace.in_dir(self.root)

    @property
    def cluster_path(self) -> Path:
        return self.paths.cluster

    @property
    def nodes_path(self) -> Path:
        return self.paths.nodes

    @property
    def outdir(self) -> Path:
        return self.paths.outdir

    @property
    def stack_dir(self) -> Path:
        return self.outdir / "stacks" / self.state_name

    @property
    def local_state(self) -> Path:
        """Where the local backend keeps state (when no HTTP state server is used)."""
        return self.root / ".state" / f"{self.state_name}.tfstate"

    def cluster(self, **overrides: Any) -> dict[str, Any]:
        """The example cluster.yaml aimed at the fakepve (and the state server, if any)."""
        cluster = example_cluster()
        cluster.update(
            proxmox_api_url=self.pve.url, proxmox_insecure=True, tfstate_state_name=self.state_name
        )
        if self.state is not None:
            cluster["tfstate_url"] = self.state.url
            cluster["tfstate_username"] = self.state.username
        cluster.update(overrides)
        return cluster

    def write(
        self, nodes: Iterable[Mapping[str, Any]] | None = None, **cluster_overrides: Any
    ) -> TofuWorkspace:
        """Write cluster.yaml (example + overrides) and nodes.yaml (default: the example's)."""
        node_list = [dict(n) for n in (example_nodes() if nodes is None else nodes)]
        self.cluster_path.write_text(yaml.safe_dump(self.cluster(**cluster_overrides), sort_keys=False))
        self.nodes_path.write_text(yaml.safe_dump({"nodes": node_list}, sort_keys=False))
        return self

    def synth(self) -> Path:
        """`python main.py` as a user runs it; returns the stack directory."""
        env = {**os.environ, **self.paths.env_vars()}
        self._run([sys.executable, str(ROOT / "main.py")], cwd=self.root, env=env, timeout=SYNTH_TIMEOUT)
        return self.stack_dir

    # ------------------------------------------------------------------- tofu

    def env(self) -> dict[str, str]:
        env = self.tools.environ()
        for name in [k for k in env if k.startswith(("TF_HTTP_", "PROXMOX_VE_", "TF_VAR_", "TF_LOG"))]:
            del env[name]
        env.update(
            TF_IN_AUTOMATION="1",
            TF_INPUT="0",
            CHECKPOINT_DISABLE="1",
            PROXMOX_VE_API_TOKEN=self.pve.api_token,
        )
        if self.state is not None:
            env.update(TF_HTTP_USERNAME=self.state.username, TF_HTTP_PASSWORD=self.state.password)
        return env

    def workflow_env(self) -> dict[str, str]:
        """env() for `python -m workflow` on this workspace: its config and output, no sops
        file (credentials come from env()), and no KUBECONFIG of the machine's own."""
        env = {**self.env(), **self.paths.env_vars(), "SECRETS_FILE": str(self.root / "none.sops.yaml")}
        env.pop("KUBECONFIG", None)
        return env

    def secrets(self) -> list[str]:
        """Values that must not leak into argv, files or logs."""
        out = [self.pve.token_secret]
        if self.state is not None:
            out.append(self.state.password)
        return out

    def tofu(
        self,
        *args: str,
        ok: Sequence[int] = (0,),
        chdir: Path | None = None,
        timeout: float = TOFU_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        argv = [self.tools.tofu, f"-chdir={chdir or self.stack_dir}", *args]
        return self._run(argv, cwd=self.root, env=dict(env or self.env()), timeout=timeout, ok=ok)

    def init(self, chdir: Path | None = None) -> Result:
        return self.tofu("init", "-no-color", "-input=false", chdir=chdir)

    def apply(self, *extra: str, ok: Sequence[int] = (0,), chdir: Path | None = None) -> Result:
        return self.tofu("apply", "-no-color", "-input=false", "-auto-approve", *extra, ok=ok, chdir=chdir)

    def destroy(self, ok: Sequence[int] = (0,), chdir: Path | None = None) -> Result:
        return self.tofu("destroy", "-no-color", "-input=false", "-auto-approve", ok=ok, chdir=chdir)

    def plan(self, chdir: Path | None = None, name: str = "plan.bin") -> PlanSummary:
        """`plan -detailed-exitcode -out`, then `show -json` of the saved plan."""
        plan_file = (chdir or self.stack_dir) / name
        result = self.tofu(
            "plan",
            "-no-color",
            "-input=false",
            "-detailed-exitcode",
            f"-out={plan_file}",
            ok=(0, 2),
            chdir=chdir,
        )
        shown = self.tofu("show", "-no-color", "-json", str(plan_file), chdir=chdir)
        data = json.loads(shown.stdout)
        changes = [c for c in data.get("resource_changes", []) if c.get("mode") == "managed"]
        return PlanSummary(exitcode=result.returncode, changes=changes)

    def cdktf(self, *args: str, ok: Sequence[int] = (0,), timeout: float = TOFU_TIMEOUT) -> Result:
        """`npx cdktf ARGS` in the project, as a cdktf user runs it: the CLI runs the app
        (cdktf.json) on this workspace's config into its cdktf.out, then tofu, found
        through TERRAFORM_BINARY_NAME from setup-tools, with the credentials in its
        environment."""
        env = self.env()
        env.update(CLUSTER_CONFIG=str(self.cluster_path), NODES_CONFIG=str(self.nodes_path), CI="1")
        argv = ["npx", "--no-install", "cdktf", *args, "--output", str(self.outdir)]
        return self._run(argv, cwd=ROOT, env=env, timeout=timeout, ok=ok)

    def state_list(self, chdir: Path | None = None) -> list[str]:
        return self.tofu("state", "list", chdir=chdir).stdout.split()

    def outputs(self, chdir: Path | None = None) -> dict[str, Any]:
        data = json.loads(self.tofu("output", "-json", chdir=chdir).stdout)
        return {k: v["value"] for k, v in data.items()}

    # ---------------------------------------------------------------- helpers

    def _run(
        self, argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float, ok: Sequence[int] = (0,)
    ) -> Result:
        for secret in self.secrets():
            if any(secret in arg for arg in argv):
                raise AssertionError("a secret was about to be passed on a command line")
        started = time.monotonic()
        try:
            proc = subprocess.run(
                argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            self._append_log(argv, None, _text(exc.stdout), _text(exc.stderr), time.monotonic() - started)
            raise CommandFailed(
                f"{_shown(argv)} did not finish within {timeout:.0f} s (log: {self.log})"
            ) from exc
        result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        self._append_log(argv, proc.returncode, proc.stdout, proc.stderr, result.seconds)
        if proc.returncode not in ok:
            tail = "\n".join(result.output.strip().splitlines()[-40:])
            raise CommandFailed(f"{_shown(argv)} exited {proc.returncode} (expected {list(ok)}):\n{tail}")
        return result

    def _append_log(self, argv: list[str], code: int | None, out: str, err: str, secs: float) -> None:
        with self.log.open("a") as log:
            log.write(f"$ {' '.join(argv)}\n# exit {code} after {secs:.2f} s\n{out}{err}\n")

    def files_containing(self, needles: Iterable[str]) -> list[str]:
        """Files under root (cdktf.out, plan files and their zip members, logs, state) that
        contain any needle."""
        paths = [p for p in self.root.rglob("*") if "providers" not in p.parts]
        return find_secrets(paths, needles)


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _shown(argv: Sequence[str]) -> str:
    """The command for a message: program name and arguments, no long paths."""
    return " ".join([Path(argv[0]).name, *(a for a in argv[1:] if not a.startswith("-chdir="))])
