"""Shim so that an experiment config can name the assessor by code directory and class.

    assessor:
      codeDirectory: <path to this repository>/core
      className: pai_assessor.PAIAssessor
      classArgs: {optimize_mode: maximize}

NNI appends ``codeDirectory`` to ``sys.path`` and imports ``pai_assessor``; this module re-exports
:class:`hpo_tools.assessor.PAIAssessor`. When ``hpo_tools`` is not installed in the Python that
runs NNI's dispatcher, the repository root (the parent of this file's directory) is put on
``sys.path`` first, so a plain checkout works too.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import hpo_tools  # noqa: F401
except ImportError:  # a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpo_tools.assessor import PAIAssessor  # noqa: E402

__all__ = ["PAIAssessor"]
