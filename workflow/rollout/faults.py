"""Proxmox faults around a VM's change: what must hold before the rollout touches a VM
(quorum, its hosts online, no lock; a backup's lock is waited out, bounded), and what a
failed tofu step was stopped by, read from tofu's error output."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workflow.errors import WorkflowError
from workflow.proxmox.api import ProxmoxApi, ProxmoxError
from workflow.rollout.report import minutes

# Locks that end by themselves: a backup (vzdump) or a migration in progress.
PASSING_LOCKS = {"backup": "a backup (vzdump)", "migrate": "a migration"}
API_TRIES = 3  # reads before a step: a dropped connection or a 5xx is tried again
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class NotNow(WorkflowError):
    """The VM cannot be changed now: `why` says what holds it, `todo` when to run again."""

    def __init__(self, why: str, todo: str) -> None:
        super().__init__(why)
        self.why = why
        self.todo = todo


@dataclass(frozen=True)
class Fault:
    """What stopped a tofu step, in a phrase; `lock` when Proxmox reported the VM locked."""

    kind: str  # locked, config-lock, quorum, offline, api, connection, tofu
    text: str
    lock: str | None = None

    @property
    def todo(self) -> str:
        return {
            "locked": "run the task again to resume once the lock is gone",
            "config-lock": "run the task again to resume once the other Proxmox task has finished",
            "quorum": "run the task again to resume once `pvecm status` shows the cluster quorate",
            "offline": "run the task again to resume once the host is back online",
        }.get(self.kind, "run the task again to resume once the Proxmox API answers again")


FAULTS: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    ("locked", re.compile(r"VM is locked \((\w+)\)"), lambda m: f"Proxmox reports the VM locked ({m[1]})"),
    (
        "config-lock",
        re.compile(r"can't lock file '[^']*lock-(\d+)\.conf' - got timeout"),
        lambda m: "another Proxmox task held the VM's configuration lock too long",
    ),
    ("quorum", re.compile(r"no quorum", re.I), lambda m: "the Proxmox cluster lost quorum"),
    (
        "offline",
        re.compile(r"HTTP 595 response|No route to host"),
        lambda m: "Proxmox could not reach the VM's host (595 No route to host: is it offline?)",
    ),
    (
        "api",
        re.compile(r"HTTP (5\d\d) response - Reason: ([^\n]*)"),
        lambda m: f"the Proxmox API answered HTTP {m[1]} ({m[2].strip()})",
    ),
    (
        "connection",
        re.compile(
            r"connection reset|connection refused|broken pipe|unexpected EOF|\bEOF\b|i/o timeout|"
            r"context deadline exceeded|TLS handshake timeout",
            re.I,
        ),
        lambda m: "the connection to the Proxmox API dropped",
    ),
)


def _unwrapped(output: str) -> str:
    """tofu's error output without colours and box drawing, each paragraph on one line
    (tofu wraps long messages)."""
    paragraphs: list[list[str]] = [[]]
    for line in ANSI.sub("", output).splitlines():
        line = line.strip().strip("│╷╵").strip()
        if line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n".join(" ".join(p) for p in paragraphs if p)


def from_tofu(output: str) -> Fault:
    """The cause of a failed tofu run, from its error output (first match in FAULTS order)."""
    text = _unwrapped(output)
    for kind, pattern, phrase in FAULTS:
        match = pattern.search(text)
        if match:
            return Fault(kind, phrase(match), match[1] if kind == "locked" else None)
    errors = [ln for ln in text.splitlines() if "Error:" in ln]
    first = errors[0].split("Error:", 1)[1].strip() if errors else "tofu failed"
    return Fault("tofu", f"tofu reported: {first}")


class ChangeGuard:
    """The checks before a VM is changed, through the Proxmox API."""

    def __init__(self, api: ProxmoxApi, say: Callable[[str], None], lock_timeout: float, poll: float) -> None:
        self.api = api
        self.say = say
        self.lock_timeout = lock_timeout
        self.poll = poll

    def _read(self, what: Callable[[], Any]) -> Any:
        last: ProxmoxError | None = None
        for attempt in range(API_TRIES):
            try:
                return what()
            except ProxmoxError as exc:
                if exc.status is not None and exc.status < 500:
                    raise
                last = exc
                if attempt + 1 < API_TRIES:
                    time.sleep(self.poll)
        assert last is not None
        raise last

    def cluster_ready(self, hosts: tuple[str, ...], others: tuple[str, ...] = ()) -> None:
        """Quorum, and each host online: the VM's `hosts`, and the stack's `others` (a step's
        plan refreshes what the VM depends on there, the ISO downloads); NotNow otherwise."""
        try:
            status = self._read(lambda: self.api.get("/cluster/status")) or []
        except ProxmoxError as exc:
            if not exc.denied:
                raise NotNow(f"the Proxmox API did not answer ({exc})", Fault("api", "").todo) from exc
            status = []  # no Sys.Audit on /: quorum cannot be read (the preflight said so)
        cluster = next((i for i in status if isinstance(i, dict) and i.get("type") == "cluster"), None)
        if cluster is not None and not cluster.get("quorate"):
            raise NotNow(
                "the Proxmox cluster has no quorum (its configuration is read-only)", Fault("quorum", "").todo
            )
        try:
            nodes = self._read(lambda: self.api.get("/nodes")) or []
        except ProxmoxError as exc:
            raise NotNow(f"the Proxmox API did not answer ({exc})", Fault("api", "").todo) from exc
        online = {str(n.get("node")): str(n.get("status")) for n in nodes if isinstance(n, dict)}
        for host in dict.fromkeys(hosts + others):
            if online.get(host) != "online":
                whose = "its host" if host in hosts else "the stack's host"
                raise NotNow(
                    f"{whose} {host} is {online.get(host) or 'not in the cluster'}",
                    Fault("offline", "").todo,
                )

    def unlocked(self, name: str, host: str, vm_id: int, label: str) -> None:
        """Returns once the VM holds no lock; waits out a backup or a migration (bounded,
        with a progress line); NotNow for any other lock, or when the wait runs out."""
        started = time.monotonic()
        last_said = -1.0
        while True:
            try:
                status = self._read(lambda: self.api.vm_status(host, vm_id))
            except ProxmoxError as exc:
                raise NotNow(f"the Proxmox API did not report {name} ({exc})", Fault("api", "").todo) from exc
            lock = status.get("lock") if isinstance(status, dict) else None
            if not lock:
                if last_said >= 0:
                    self.say(f"{label} {name}: the lock is gone after {minutes(time.monotonic() - started)}")
                return
            what = PASSING_LOCKS.get(str(lock))
            if what is None:
                raise NotNow(
                    f"{name} is locked ({lock}) by an unfinished Proxmox task",
                    f"if no task holds it any more, run `qm unlock {vm_id}` on {host}; "
                    "then run the task again to resume",
                )
            waited = time.monotonic() - started
            if waited >= self.lock_timeout:
                raise NotNow(
                    f"{what} still holds {name} (lock: {lock}) after {minutes(waited)}",
                    "run the task again to resume once it has finished "
                    "(or give it longer with --lock-timeout)",
                )
            if last_said < 0 or waited - last_said >= 30:
                self.say(
                    f"{label} {name}: {what} holds the VM (lock: {lock}): waiting for it to finish "
                    f"({minutes(waited)} of at most {minutes(self.lock_timeout)})"
                )
                last_said = waited
            time.sleep(min(self.poll, max(0.0, self.lock_timeout - waited)))

    def power(self, host: str, vm_id: int | None) -> str:
        """`running`, `stopped` ... for the stop line; `unknown` when it cannot be read."""
        if vm_id is None:
            return "unknown"
        try:
            status = self.api.vm_status(host, vm_id)
        except ProxmoxError:
            return "unknown"
        return str(status.get("qmpstatus") or status.get("status") or "unknown")

    def pending(self, host: str, vm_id: int) -> list[str]:
        """Config keys Proxmox keeps pending until the VM restarts."""
        items = self.api.get(self.api.vm_path(host, vm_id) + "/pending") or []
        return sorted(str(i.get("key")) for i in items if isinstance(i, dict) and "pending" in i)
