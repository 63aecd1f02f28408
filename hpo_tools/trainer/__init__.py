"""A small EasyRec-compatible TensorFlow trainer and synthetic data (extra ``trainer``).

This is the only package allowed to import TensorFlow, and it does so only inside the functions
that train (``hpo_tools.trainer.train``); ``hpo_tools.trainer.data`` needs numpy only.
See docs/trainer.md and docs/data.md.
"""
