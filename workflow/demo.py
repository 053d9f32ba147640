"""The whole flow in one command, on loopback: the bundled example config, this project's
tfstate server (file store) and fakepve as the Proxmox VE; synth, init, plan, apply; the
outputs; then everything it started is stopped and its temporary files removed.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from config import ConfigPaths, load_config
from workflow.errors import WorkflowError
from workflow.setup_tools import ensure_tools
from workflow.tofu import Tofu


def step(message: str) -> float:
    print(f"demo: {message}", file=sys.stderr, flush=True)
    return time.monotonic()


def done(started: float) -> None:
    print(f"demo:   done in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)


def run_demo(keep: bool = False) -> int:
    # The demo's harness (fakepve, the state server) is development tooling: imported here.
    from devenv.fakepve import FakePveServer
    from devenv.state_server import StateServer, StateServerError
    from devenv.workspace import TofuWorkspace
    from main import describe, synthesize

    t = step(
        "making tofu and the bpg provider available (the first run builds them from "
        "their Go modules: several minutes)"
    )
    env = ensure_tools().environ()
    done(t)
    tmp = Path(tempfile.mkdtemp(prefix="talos-cdktf-demo-"))
    try:
        t = step("starting fakepve (a fake Proxmox VE API) and the tfstate server on 127.0.0.1")
        with FakePveServer() as pve, StateServer(tmp / "tfstate") as state:
            done(t)
            print(f"demo:   Proxmox VE API: {pve.url}   state server: {state.url}", file=sys.stderr)
            ws = TofuWorkspace(tmp, ensure_tools(), pve, state=state)
            ws.write()
            t = step(f"synthesizing the bundled example ({ws.cluster_path.name}, {ws.nodes_path.name})")
            config = load_config(ConfigPaths(ws.cluster_path, ws.nodes_path)).config
            output = synthesize(config, str(ws.outdir))
            sys.stderr.write(describe(config, output))
            done(t)
            # Credentials only in tofu's environment, as `task` does with secrets.sops.yaml.
            tofu = Tofu(
                output.parent,
                {
                    **env,
                    "TF_HTTP_USERNAME": state.username,
                    "TF_HTTP_PASSWORD": state.password,
                    "PROXMOX_VE_API_TOKEN": pve.api_token,
                    "TF_IN_AUTOMATION": "1",
                },
            )
            for label, args in (
                ("tofu init", ("init", "-input=false", "-no-color")),
                ("tofu plan", ("plan", "-input=false", "-no-color", "-out=tfplan")),
                ("tofu apply", ("apply", "-input=false", "-no-color", "tfplan")),
            ):
                t = step(label)
                tofu.checked(*args)
                done(t)
            outputs = tofu.output_json()
            print("\ncluster_summary:\n" + outputs["cluster_summary"]["value"])
            print("node_vm_ids:")
            for name, vm_id in outputs["node_vm_ids"]["value"].items():
                print(f"  {name:12} {vm_id}")
            count = pve.call(lambda p: len(p.vms))
            print(f"\nfakepve now holds {count} VMs; state is in the tfstate server.")
            t = step("stopping fakepve and the tfstate server")
        done(t)
    except (StateServerError, RuntimeError, OSError) as exc:
        # fakepve or the state server did not start (a port, a certificate, a crash)
        raise WorkflowError(f"the demo's local services failed: {exc}") from exc
    finally:
        if keep:
            print(f"demo: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0
