"""`python -m hpo_tools` is the `hpo-tools` command."""

from __future__ import annotations

from hpo_tools.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
