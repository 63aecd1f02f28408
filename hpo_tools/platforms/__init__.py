"""Where training commands run: the platform interface and its registry.

``create_platform("Local" | "MaxCompute", **settings)`` builds a platform;
``platform_for_description(job.describe())`` rebuilds one in another process to cancel a job.
See docs/platforms.md.
"""

from __future__ import annotations

from hpo_tools.platforms.base import (
    CLASSIC_FORMAT_PLATFORM,
    Job,
    JobState,
    OutputFilter,
    Platform,
    UpdateCallback,
    create_platform,
    display_name,
    needs_platform_message,
    platform_class,
    platform_classes,
    platform_for_description,
    platform_names,
    platforms_reading,
    register_platform,
    registry_keys,
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
    "needs_platform_message",
    "platforms_reading",
    "platform_class",
    "platform_classes",
    "registry_keys",
    "display_name",
    "CLASSIC_FORMAT_PLATFORM",
]
