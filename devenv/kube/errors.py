"""The one exception the Kubernetes harness raises."""

from __future__ import annotations


class KubeError(RuntimeError):
    """The control plane could not be started, or answered something the harness cannot go on with."""


class PortTaken(KubeError):
    """A free port chosen for a process was taken by someone else before it bound it."""
