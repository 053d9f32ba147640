"""The one place that turns the errors a command reports into its exit code: each printed
on stderr as the commands print them (one line per problem, no traceback), for main.py
and `python -m workflow` alike."""

from __future__ import annotations

import sys

from cdktf_runtime import RuntimeUnavailable
from config import ConfigError
from output_dir import OutputDirError
from workflow.errors import WorkflowError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it

# What a command reports; anything else is a bug, and its traceback helps.
REPORTED = (ConfigError, OutputDirError, RuntimeUnavailable, WorkflowError, KeyboardInterrupt)


def report(exc: BaseException) -> int:
    """Print `exc` (one of REPORTED) on stderr; return the exit code it means."""
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} found; nothing was written.", file=sys.stderr)
        return EXIT_BAD_INPUT
    if isinstance(exc, WorkflowError):
        if str(exc):  # an empty message: the problem was reported already
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):  # what was written is cleaned up (output_dir)
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(exc, (OutputDirError, RuntimeUnavailable)):
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    raise TypeError(f"not a reported error: {exc!r}") from exc
