"""The rolling apply's own arguments, taken out before the rest go to tofu."""

from __future__ import annotations

from dataclasses import dataclass

from workflow.errors import WorkflowError
from workflow.rollout.health import TALOS_CHECK_MODES

DEFAULT_NODE_TIMEOUT = 600.0  # a Talos node boots in a minute or two; a slow host gets room


@dataclass(frozen=True)
class RolloutOptions:
    parallel: int = 1  # workers restarted at a time (controllers: always one)
    node_timeout: float = DEFAULT_NODE_TIMEOUT  # seconds for a node to be healthy again
    talos_check: str = "auto"  # probe the Talos API port: auto, on, off
    poll_interval: float = 1.0


FLAGS = {"--parallel": "parallel", "--node-timeout": "node_timeout", "--talos-check": "talos_check"}


def split_rollout_args(args: list[str]) -> tuple[RolloutOptions, list[str]]:
    """(the options, the other arguments). `--flag VALUE` and `--flag=VALUE` both work."""
    values: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if flag in FLAGS:
            if not eq:
                if i + 1 >= len(args):
                    raise WorkflowError(f"{flag} needs a value")
                value = args[i + 1]
                i += 1
            values[FLAGS[flag]] = value
        else:
            rest.append(args[i])
        i += 1
    return _parse(values), rest


def _parse(values: dict[str, str]) -> RolloutOptions:
    parallel = values.get("parallel", "1")
    if not parallel.isdigit() or int(parallel) < 1:
        raise WorkflowError(f"--parallel: {parallel!r} is not a whole number of workers >= 1")
    timeout = values.get("node_timeout", str(DEFAULT_NODE_TIMEOUT))
    try:
        seconds = float(timeout)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise WorkflowError(f"--node-timeout: {timeout!r} is not a number of seconds > 0")
    mode = values.get("talos_check", "auto")
    if mode not in TALOS_CHECK_MODES:
        raise WorkflowError(f"--talos-check: {mode!r} is not one of {', '.join(TALOS_CHECK_MODES)}")
    return RolloutOptions(parallel=int(parallel), node_timeout=seconds, talos_check=mode)
