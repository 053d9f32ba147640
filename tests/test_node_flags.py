"""The node settings main.py adds for jsii's node processes, and the user's own winning."""

from __future__ import annotations

import pytest

from cdktf_runtime.node_flags import HEAP_FLAGS, add_heap_flags, with_flags


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, "--max-semi-space-size=1"),
        ("", "--max-semi-space-size=1"),
        ("  ", "--max-semi-space-size=1"),
        ("--enable-source-maps", "--enable-source-maps --max-semi-space-size=1"),
        ("--max-semi-space-size=8", "--max-semi-space-size=8"),  # the user's own value wins
        ("--max-semi-space-size=8 --trace-warnings", "--max-semi-space-size=8 --trace-warnings"),
        ("--max-old-space-size=512", "--max-old-space-size=512 --max-semi-space-size=1"),
    ],
)
def test_heap_flags_join_the_users_node_options(user: str | None, expected: str) -> None:
    environ = {} if user is None else {"NODE_OPTIONS": user}
    add_heap_flags(environ)
    assert environ["NODE_OPTIONS"] == expected
    add_heap_flags(environ)  # idempotent
    assert environ["NODE_OPTIONS"] == expected


def test_every_flag_is_added_once() -> None:
    assert with_flags("", HEAP_FLAGS).split() == list(HEAP_FLAGS)
    assert with_flags(with_flags("", HEAP_FLAGS), HEAP_FLAGS).split() == list(HEAP_FLAGS)
