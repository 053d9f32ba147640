"""Where tofu keeps the stack's state.

HTTP (the tfstate-worker or this project's tfstate server): addresses only. The
credentials come from TF_HTTP_USERNAME / TF_HTTP_PASSWORD in tofu's environment; cdktf
would write them into cdk.tf.json in plain text if they were passed here.
Local: a file beside the operator's config, referenced relative to the stack directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import cdktf
from constructs import Construct

from config import StateBackendSpec


class StateBackend(Construct):
    def __init__(self, scope: Construct, id_: str, spec: StateBackendSpec, stack_dir: Path):
        super().__init__(scope, id_)
        stack = cdktf.TerraformStack.of(self)
        if spec.http_address is not None:
            cdktf.HttpBackend(
                stack,
                address=spec.http_address,
                lock_address=spec.lock_address,
                unlock_address=spec.lock_address,
                lock_method="LOCK",
                unlock_method="UNLOCK",
            )
        else:
            assert spec.local_path is not None
            # Relative, so the output does not depend on where the checkout lives.
            path = os.path.relpath(spec.local_path, stack_dir.resolve())
            cdktf.LocalBackend(stack, path=path)
