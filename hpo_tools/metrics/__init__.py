"""Follow a job's evaluation results and turn named metrics into one weighted score.

See docs/metrics.md. Nothing here imports TensorFlow: event files are decoded with the protos
shipped in ``tensorboard`` and a record reader of our own.
"""

from __future__ import annotations

from hpo_tools.metrics.events import EventDirectoryReader, EventFileTail, ScalarEvent
from hpo_tools.metrics.follower import Follower
from hpo_tools.metrics.score import FinalMode, MetricSpec, OptimizeMode, Report
from hpo_tools.metrics.sources import (
    MetricPoint,
    MetricSource,
    SourceFactory,
    build_source,
    register_source_type,
    source_types,
)

__all__ = [
    "EventDirectoryReader",
    "EventFileTail",
    "FinalMode",
    "Follower",
    "MetricPoint",
    "MetricSource",
    "MetricSpec",
    "OptimizeMode",
    "Report",
    "ScalarEvent",
    "SourceFactory",
    "build_source",
    "register_source_type",
    "source_types",
]
