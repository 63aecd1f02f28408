"""The DataScience platform: Local, on the master of an EMR DataScience cluster, with HDFS.

hpo_tools 0.1.x's ``[platform_config] name=DataScience``: the commands run on this machine (the
cluster's master, where NNI runs) exactly as on the Local platform (process groups,
parent-death signal, cancellation: see :mod:`hpo_tools.platforms.local`), and the trial file's
paths (``[params_config]`` configs, ``metric_source`` event directories) are ``hdfs://`` ones,
which :mod:`hpo_tools.storage` reads and writes through the namenode's WebHDFS API
(``HPO_TOOLS_WEBHDFS``, ``HADOOP_USER_NAME``; see :mod:`hpo_tools.hdfs`). The jobs inherit the
runner's environment, ``HADOOP_USER_NAME`` included, so they write HDFS as the same user.

It has no trial-file section of its own (0.1.x had none). An ``hdfs://`` path whose WebHDFS
address the environment does not give is refused when the trial file is read (``hpo-tools
check`` says so before anything runs); that check is storage's, for every platform.
"""

from __future__ import annotations

from hpo_tools.platforms.local import LocalPlatform

__all__ = ["DataSciencePlatform"]


class DataSciencePlatform(LocalPlatform):
    """Runs commands on this machine, as :class:`LocalPlatform` does (same settings:
    ``grace_period``, ``cwd``, ``shell``); its jobs are recorded as DataScience jobs."""

    name = "datascience"
