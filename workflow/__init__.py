"""The operator's workflow behind `task`: synth when needed, secrets via sops/age, tofu."""
