"""Stacks: compositions of constructs that synthesize to one OpenTofu root module each."""
