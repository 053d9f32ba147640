"""The write path's process-level tuning: freed memory kept in the heap (tfstate_server.heap)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A write's large blocks, in the order of a cycle (body chunks joined, the JSON check's
# buffers, ...): with glibc's defaults each round maps and unmaps, touching fresh pages.
CHILD = """
import resource, sys
from tfstate_server.heap import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def cycle():
    a = bytes(3_000_000); b = bytes(1_000_000); c = bytes(2_500_000); del a
    d = bytes(1_200_000); del b, c, d
for _ in range(3):
    cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    # In a child: the thresholds are process-wide.
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_kept_for_the_next_body() -> None:
    kept, default = _page_faults("keep"), _page_faults("default")
    assert kept < 100, (kept, default)  # measured: 0 kept, 6,600 with the defaults
    assert default > 10 * max(kept, 1)
