"""A small EasyRec-compatible TensorFlow trainer and synthetic data (extra ``trainer``).

This is the only package allowed to import TensorFlow. ``config.py`` and ``data.py`` need no
TensorFlow; ``train.py`` imports it inside its functions and ``model.py`` (imported only by
``train.train_and_evaluate``) at its top. Command line: ``python -m hpo_tools.trainer``.
See docs/trainer.md and docs/data.md.
"""

from __future__ import annotations

__all__ = ["DEFAULT_END_DATE"]

#: Last day of the synthetic data set unless ``--end-date`` says otherwise. It lives here, not in
#: ``data.py``, so that building the ``hpo-tools`` parser does not import numpy.
DEFAULT_END_DATE = "20220617"
