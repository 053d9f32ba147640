"""End-to-end tests: the real tofu and bpg provider against fakepve on loopback.

A package (unlike tests/), so that its conftest is imported as `e2e.conftest` and does
not shadow tests/conftest.py, which other test modules import as `conftest`.
"""
