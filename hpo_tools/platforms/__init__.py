"""Where training commands run: the platform interface and its registry.

``create_platform("Local" | "MaxCompute", **settings)`` builds a platform;
``platform_for_description(job.describe())`` rebuilds one in another process to cancel a job.
See docs/platforms.md.
"""

from __future__ import annotations

from hpo_tools.platforms.base import (
    Job,
    JobState,
    OutputFilter,
    Platform,
    UpdateCallback,
    create_platform,
    platform_for_description,
    platform_names,
    register_platform,
)

__all__ = [
    "Job",
    "JobState",
    "OutputFilter",
    "Platform",
    "UpdateCallback",
    "create_platform",
    "platform_for_description",
    "platform_names",
    "register_platform",
]
