"""What the e2e tests ask of /proc: the live processes an experiment may have left behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def live_processes() -> Iterator[tuple[int, str, list[bytes]]]:
    """``(pid, command line, environment entries)`` of every live process but this one.

    Zombies are left out (they run nothing), and so are processes that end while being read.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            yield int(entry.name), cmdline, environ


def processes_of(experiment_id: str) -> list[str]:
    """Live processes of an experiment: NNI's manager and dispatcher (the id is on their command
    line) and trials and their jobs (``NNI_EXP_ID`` in their environment)."""
    marker = f"NNI_EXP_ID={experiment_id}".encode()
    return [
        f"{pid}: {cmdline[:120]}"
        for pid, cmdline, environ in live_processes()
        if experiment_id in cmdline or marker in environ
    ]
