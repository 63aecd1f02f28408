"""hpo-tools: hyperparameter optimization on NNI for EasyRec-style protobuf-text configs."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
