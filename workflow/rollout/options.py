"""The rolling apply's own arguments, taken out before the rest go to tofu."""

from __future__ import annotations

from dataclasses import dataclass

from workflow.errors import WorkflowError
from workflow.rollout.health import TALOS_CHECK_MODES

DEFAULT_NODE_TIMEOUT = 600.0  # a Talos node boots in a minute or two; a slow host gets room
DEFAULT_DRAIN_TIMEOUT = 300.0  # kubectl drain has none; a PDB that never allows one must end
# A nightly backup (vzdump) of a VM's disk holds its lock for minutes, a big one for longer.
DEFAULT_LOCK_TIMEOUT = 1800.0
CLUSTER_CHECK_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class RolloutOptions:
    parallel: int = 1  # workers restarted at a time (controllers: always one)
    node_timeout: float = DEFAULT_NODE_TIMEOUT  # seconds for a node to be healthy again
    talos_check: str = "auto"  # probe the Talos API port: auto, on, off
    poll_interval: float = 1.0
    allow_replace: bool = False  # a VM destroyed and created again (its disk lost) may go ahead
    kubeconfig: str | None = None  # --kubeconfig: overrides KUBECONFIG and ./kubeconfig
    cluster_check: str = "auto"  # see the cluster through a kubeconfig: auto, on, off
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT  # seconds to evict a worker's pods
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT  # seconds to wait for a backup's lock on a VM


FLAGS = {
    "--parallel": "parallel",
    "--node-timeout": "node_timeout",
    "--talos-check": "talos_check",
    "--kubeconfig": "kubeconfig",
    "--cluster-check": "cluster_check",
    "--drain-timeout": "drain_timeout",
    "--lock-timeout": "lock_timeout",
}
SWITCHES = {"--allow-replace": "allow_replace"}


def split_rollout_args(args: list[str]) -> tuple[RolloutOptions, list[str]]:
    """(the options, the other arguments). `--flag VALUE` and `--flag=VALUE` both work."""
    values: dict[str, str] = {}
    switches: set[str] = set()
    rest: list[str] = []
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if flag in SWITCHES:
            if eq:
                raise WorkflowError(f"{flag} takes no value")
            switches.add(SWITCHES[flag])
        elif flag in FLAGS:
            if not eq:
                if i + 1 >= len(args):
                    raise WorkflowError(f"{flag} needs a value")
                value = args[i + 1]
                i += 1
            values[FLAGS[flag]] = value
        else:
            rest.append(args[i])
        i += 1
    return _parse(values, switches), rest


def _seconds(flag: str, text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise WorkflowError(f"{flag}: {text!r} is not a number of seconds > 0")
    return seconds


def _choice(flag: str, value: str, modes: tuple[str, ...]) -> str:
    if value not in modes:
        raise WorkflowError(f"{flag}: {value!r} is not one of {', '.join(modes)}")
    return value


def _parse(values: dict[str, str], switches: set[str]) -> RolloutOptions:
    parallel = values.get("parallel", "1")
    if not parallel.isdigit() or int(parallel) < 1:
        raise WorkflowError(f"--parallel: {parallel!r} is not a whole number of workers >= 1")
    kubeconfig = values.get("kubeconfig")
    if kubeconfig is not None and not kubeconfig:
        raise WorkflowError("--kubeconfig: an empty path (expected the kubeconfig file's path)")
    return RolloutOptions(
        parallel=int(parallel),
        node_timeout=_seconds("--node-timeout", values.get("node_timeout", str(DEFAULT_NODE_TIMEOUT))),
        talos_check=_choice("--talos-check", values.get("talos_check", "auto"), TALOS_CHECK_MODES),
        allow_replace="allow_replace" in switches,
        kubeconfig=kubeconfig,
        cluster_check=_choice("--cluster-check", values.get("cluster_check", "auto"), CLUSTER_CHECK_MODES),
        drain_timeout=_seconds("--drain-timeout", values.get("drain_timeout", str(DEFAULT_DRAIN_TIMEOUT))),
        lock_timeout=_seconds("--lock-timeout", values.get("lock_timeout", str(DEFAULT_LOCK_TIMEOUT))),
    )
