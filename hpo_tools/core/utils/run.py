"""``python3 -m hpo_tools.core.utils.run --config=./trial.ini``: hpo_tools 0.1.x's
``trialCommand``, an alias of ``python -m hpo_tools.run`` (same options, same exit codes), so
that an ``exp.yml`` written for 0.1.x runs unchanged."""

from __future__ import annotations

from hpo_tools.run import exit_like, main

__all__ = ["main"]

if __name__ == "__main__":
    exit_like(main())
