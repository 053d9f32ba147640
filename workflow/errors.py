"""Errors the workflow reports as one line (no traceback) with exit code 2."""


class WorkflowError(Exception):
    exit_code = 2
