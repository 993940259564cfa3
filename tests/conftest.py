"""Shared test settings."""

# tests/fixtures/ holds small chapters that the tools are tested on, some deliberately broken:
# never collect them as tests (nor run them under nbval, which `make test` enables).
collect_ignore = ["fixtures"]
