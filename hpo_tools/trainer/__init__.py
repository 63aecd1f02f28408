"""A small EasyRec-compatible TensorFlow trainer and synthetic data (extra ``trainer``).

This is the only package allowed to import TensorFlow. ``config.py`` and ``data.py`` need no
TensorFlow; ``train.py`` imports it inside its functions and ``model.py`` (imported only by
``train.train_and_evaluate``) at its top. Command line: ``python -m hpo_tools.trainer``.
See docs/trainer.md and docs/data.md.
"""
