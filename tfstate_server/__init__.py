"""An HTTP state backend for OpenTofu/Terraform, API-compatible with the tfstate-worker."""

__version__ = "0.1.0"
