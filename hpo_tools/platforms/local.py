"""The local platform: each command runs under ``/bin/bash`` in its own process group.

What it guarantees (docs/platforms.md has the details):

- The job's output (stdout and stderr) is appended to ``log_path``; with ``output_filter`` it is
  relayed line by line through the filter (the runner's secret masker) by a reader thread,
  otherwise the job writes the file directly. The ``stdout`` metric source follows that file.
- :meth:`LocalJob.cancel` sends SIGTERM to the whole process group, then SIGKILL after the grace
  period (2 s by default); it returns within ``grace_period + 0.6`` seconds and is idempotent.
- If the process that submitted the job dies, even by SIGKILL, the job dies too: the child's shell
  gets a parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``) and its trap terminates the
  whole group (grandchildren included). The signal fires when the *thread* that called
  :meth:`LocalPlatform.submit` ends, so submit from a thread that outlives the job (the main one).
- When a job's shell exits, whatever it left running in its group is terminated too.
- :meth:`LocalJob.describe` records pid, process group, the process start time and the boot id, so
  :meth:`LocalPlatform.cancel_described` in another process kills the group only if it is still
  the same one (a reused pid is left alone).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Dict, List, NamedTuple, Optional

from hpo_tools.errors import ConfigError, PlatformError
from hpo_tools.platforms.base import Job, JobState, OutputFilter, Platform, UpdateCallback

__all__ = ["LocalPlatform", "LocalJob", "ProcStat", "read_proc_stat", "group_members"]

_logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_DEFAULT_GRACE = 2.0
_MAX_GRACE = 2.4  # cancel must stay under 3 s: grace + 0.6 s to reap after SIGKILL
_KILL_WAIT = 0.5
_CHECK_INTERVAL = 0.05

# The shell script around the user's command. The shell receives SIGHUP when the submitting
# process dies (parent-death signal); the trap then terminates the whole process group, which a
# plain parent-death signal on the shell alone would not do (grandchildren would survive).
# The command runs as a background list so that the trap runs at once (bash defers traps while a
# foreground command runs); `wait` returns its exit status, which becomes the shell's.
_WRAPPER = (
    "trap 'trap \"\" TERM; kill -TERM 0 2>/dev/null; sleep {grace}; kill -KILL 0' HUP\n"
    "{{\n{command}\n}} &\n"
    "wait $!\n"
)


class ProcStat(NamedTuple):
    """The fields of ``/proc/<pid>/stat`` that identify a process."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    start_time: int  # clock ticks after boot (field 22)

    @property
    def is_alive(self) -> bool:
        """False for zombies and dead processes (state Z or X)."""
        return self.state not in ("Z", "X", "x")


def read_proc_stat(pid: int) -> Optional[ProcStat]:
    """Parse ``/proc/<pid>/stat``; None when the process does not exist."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as handle:
            data = handle.read().decode("ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
    rest = data[data.rindex(")") + 2 :].split()
    return ProcStat(
        pid=int(pid),
        state=rest[0],
        ppid=int(rest[1]),
        pgrp=int(rest[2]),
        session=int(rest[3]),
        start_time=int(rest[19]),
    )


def group_members(pgid: int) -> List[ProcStat]:
    """Every live (not zombie) process whose process group is ``pgid``."""
    members = []
    try:
        names = os.listdir("/proc")
    except OSError:  # pragma: no cover - /proc is always there on Linux
        return members
    for name in names:
        if not name.isdigit():
            continue
        stat = read_proc_stat(int(name))
        if stat is not None and stat.pgrp == pgid and stat.is_alive:
            members.append(stat)
    return members


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:  # pragma: no cover - not Linux
        return ""


def _libc() -> Optional[Any]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - no dynamic libc
        return None


def _parent_death_hook(death_signal: int) -> Any:
    """A ``preexec_fn`` that asks the kernel to send ``death_signal`` when our process dies."""
    libc = _libc()  # loaded before fork: the child only makes the system call
    parent_pid = os.getpid()
    if libc is None:
        return None

    def set_parent_death_signal() -> None:
        # A signal ignored when a shell starts cannot be trapped by it (POSIX), and ignored
        # dispositions pass through exec: a runner started under `nohup` (SIGHUP ignored) would
        # give a job shell whose trap never fires, and the job would outlive the runner.
        libc.signal(death_signal, 0)  # SIG_DFL; libc's: signal.signal() is for main threads
        libc.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return set_parent_death_signal


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _terminate_group(
    pgid: int, grace: float, leader: Optional[subprocess.Popen] = None
) -> bool:
    """SIGTERM the group, SIGKILL it after ``grace`` s; bounded by ``grace + _KILL_WAIT`` s.

    Returns:
        True when some process of the group was alive and got a signal.
    """

    def alive() -> bool:
        if leader is not None and leader.poll() is None:
            return True
        return bool(group_members(pgid))

    if not alive():
        return False
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive():
            return True
        time.sleep(_CHECK_INTERVAL)
    _logger.info("process group %d still alive %.1f s after SIGTERM: SIGKILL", pgid, grace)
    _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + _KILL_WAIT
    while time.monotonic() < deadline and alive():
        time.sleep(_CHECK_INTERVAL)
    return True


def _describe_exit(returncode: int) -> str:
    """``exit code 3``; ``killed by SIGKILL`` for the shell itself killed by a signal; and
    ``killed by SIGKILL (exit code 137)`` for the status 128+N a shell gives a command killed
    by signal N (the wrapper's ``wait`` reports the training process's death that way)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    if returncode > 128:
        try:
            return f"killed by {signal.Signals(returncode - 128).name} (exit code {returncode})"
        except ValueError:
            pass
    return f"exit code {returncode}"


class LocalJob(Job):
    """A command running in its own process group on this machine.

    Attributes:
        pid: The shell's pid, which is also the process group id.
        returncode: The shell's exit status once finished, else None.
    """

    def __init__(
        self,
        process: subprocess.Popen,
        *,
        log_path: Path,
        platform: LocalPlatform,
        relay: Optional[threading.Thread],
        on_update: Optional[UpdateCallback],
    ) -> None:
        stat = read_proc_stat(process.pid)
        start_time = stat.start_time if stat is not None else None
        # pid + start time name the process uniquely (pids are reused)
        suffix = f"@{start_time}" if start_time is not None else ""
        super().__init__(f"local:{process.pid}{suffix}", log_path)
        self.pid = process.pid
        self.pgid = process.pid  # start_new_session: the shell leads its own group
        self.start_time = start_time
        self.returncode: Optional[int] = None
        self._process = process
        self._platform = platform
        self._relay = relay
        self._on_update = on_update
        self._state = JobState.RUNNING
        self._cancelling = False
        self._lock = threading.RLock()

    def poll(self) -> JobState:
        """RUNNING while the shell runs, then SUCCEEDED (exit 0), FAILED or CANCELLED."""
        with self._lock:
            if self._state.is_finished:
                return self._state
        returncode = self._process.poll()
        if returncode is None:
            return JobState.RUNNING
        return self._finish(returncode)

    def wait(self, timeout: Optional[float] = None) -> JobState:
        """Block until the job finishes or ``timeout`` s pass; return the state then."""
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return self.poll()

    def cancel(self) -> None:
        """SIGTERM the job's process group, SIGKILL after the grace period; reap the shell."""
        with self._lock:
            if self._state.is_finished or self._cancelling:
                return
            returncode = self._process.poll()
            if returncode is None:
                self._cancelling = True
        if returncode is not None:  # it ended on its own before the cancel
            self._finish(returncode)
            return
        _logger.info("cancelling local job %s (process group %d)", self.job_id, self.pgid)
        _terminate_group(self.pgid, self._platform.grace_period, leader=self._process)
        returncode = self._process.poll()
        if returncode is None:  # pragma: no cover - SIGKILL could not be delivered
            _logger.warning("local job %s survived SIGKILL", self.job_id)
            return
        self._finish(returncode)

    def describe(self) -> Dict[str, Any]:
        """Platform name and settings, job id, pid, process group, start time, boot id, log."""
        return {
            "platform": self._platform.name,  # a subclass's (DataScience) own name
            "settings": self._platform.settings(),
            "job_id": self.job_id,
            "pid": self.pid,
            "pgid": self.pgid,
            "start_time": self.start_time,
            "boot_id": _boot_id(),
            "log_path": str(self.log_path),
        }

    def _finish(self, returncode: int) -> JobState:
        with self._lock:
            if self._state.is_finished:
                return self._state
            self.returncode = returncode
            # Anything the command left running in its group goes too: a trial leaves nothing.
            if not self._cancelling and group_members(self.pgid):
                _logger.warning(
                    "local job %s exited but left processes running; terminating them",
                    self.job_id,
                )
                _terminate_group(self.pgid, self._platform.grace_period)
            if self._relay is not None:
                # Normally at EOF already; a process that left the group (setsid) may hold the
                # pipe open: do not let it stretch a cancel past its bound.
                self._relay.join(timeout=0.2 if self._cancelling else 1.0)
            if self._cancelling:
                self._state = JobState.CANCELLED
                self.message = "cancelled"
            elif returncode == 0:
                self._state = JobState.SUCCEEDED
            else:
                self._state = JobState.FAILED
                self.message = _describe_exit(returncode)
            state = self._state
        _logger.info("local job %s %s (%s)", self.job_id, state.value, _describe_exit(returncode))
        if self._on_update is not None:
            self._on_update(self)
        return state


def _relay_output(pipe: IO[bytes], log_path: Path, output_filter: OutputFilter) -> None:
    """Copy ``pipe`` to ``log_path`` line by line through ``output_filter``."""
    with pipe, open(log_path, "a", encoding="utf-8") as log:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            try:
                line = output_filter(line)
            except Exception:  # a line the filter cannot handle is dropped, never leaked
                _logger.exception("output filter failed; a line of job output was dropped")
                line = "<line dropped: output filter failed>\n"
            log.write(line)
            log.flush()


class LocalPlatform(Platform):
    """Runs commands on this machine with ``/bin/bash -c``.

    Args:
        grace_period: Seconds between SIGTERM and SIGKILL when cancelling (0 to 2.4).
        cwd: Working directory of the jobs (default: the current one).
        shell: The shell that runs the command text.

    Raises:
        ConfigError: A setting has the wrong type or range.
    """

    name = "local"

    def __init__(
        self,
        *,
        grace_period: Any = _DEFAULT_GRACE,
        cwd: Optional[str] = None,
        shell: str = "/bin/bash",
    ) -> None:
        try:
            grace = float(grace_period)
        except (TypeError, ValueError):
            raise ConfigError(
                f"platform Local: grace_period={grace_period!r} is not a number of seconds"
            ) from None
        if not 0 <= grace <= _MAX_GRACE:
            raise ConfigError(
                f"platform Local: grace_period={grace_period!r} must be between 0 and {_MAX_GRACE}"
                " seconds (cancel must finish within 3 s)"
            )
        self.grace_period = grace
        self.cwd = None if cwd in (None, "") else str(cwd)
        self.shell = str(shell)

    @classmethod
    def shape_command(cls, text: str) -> str:
        """Continuation lines belong to one shell command, not several: join them."""
        return " ".join(line.strip() for line in text.splitlines() if line.strip())

    def settings(self) -> Dict[str, Any]:
        """Grace period, working directory and shell (nothing here is secret)."""
        return {"grace_period": self.grace_period, "cwd": self.cwd, "shell": self.shell}

    def submit(
        self,
        command: str,
        *,
        log_path: Path,
        env: Optional[Mapping[str, str]] = None,
        on_update: Optional[UpdateCallback] = None,
        output_filter: Optional[OutputFilter] = None,
    ) -> LocalJob:
        """Start ``command`` in a new process group; output is appended to ``log_path``.

        Args:
            command: Shell command text (may span lines).
            log_path: File the output goes to (created with its parent directory).
            env: Variables added to this process's environment for the job.
            on_update: Called with the job when it finishes.
            output_filter: When given, each output line goes through it before reaching the
                log (the job's output is piped through a reader thread); otherwise the job
                writes the log file directly.

        Raises:
            PlatformError: The shell could not be started.
        """
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        job_env = dict(os.environ)
        if env:
            job_env.update({str(k): str(v) for k, v in env.items()})
        script = _WRAPPER.format(grace=self.grace_period, command=command.strip("\n"))
        log_file = open(log_path, "ab")
        try:
            stdout: Any = subprocess.PIPE if output_filter is not None else log_file
            process = subprocess.Popen(
                [self.shell, "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=job_env,
                start_new_session=True,
                preexec_fn=_parent_death_hook(signal.SIGHUP),
                close_fds=True,
            )
        except OSError as err:
            raise PlatformError(
                f"platform Local: cannot start {self.shell!r} in {self.cwd or os.getcwd()!r}: "
                f"{err.strerror or err}"
            ) from err
        finally:
            log_file.close()  # the child holds its own copy of the descriptor
        relay = None
        if output_filter is not None:
            relay = threading.Thread(
                target=_relay_output,
                args=(process.stdout, log_path, output_filter),
                name=f"hpo-tools-relay-{process.pid}",
                daemon=True,
            )
            relay.start()
        job = LocalJob(process, log_path=log_path, platform=self, relay=relay, on_update=on_update)
        _logger.info("started local job %s, output in %s", job.job_id, log_path)
        if on_update is not None:
            on_update(job)
        return job

    def cancel_described(self, description: Mapping[str, Any]) -> bool:
        """Terminate the process group described, if it is still the job's own.

        The group is signalled only when the shell is still the same process (same start time
        and boot), or, when the shell is gone, when live members of its group remain in its
        session and started after it. Bounded by ``grace_period + 0.6`` s.
        """
        try:
            pid = int(description["pid"])
            pgid = int(description.get("pgid", pid))
            start_time = description.get("start_time")
        except (KeyError, TypeError, ValueError):
            raise PlatformError(
                f"local job description lacks a pid: {dict(description)!r}"
            ) from None
        boot_id = description.get("boot_id")
        if boot_id and boot_id != _boot_id():
            _logger.info("local job %s ran before a reboot: nothing to cancel", pid)
            return False
        stat = read_proc_stat(pid)
        if stat is not None and stat.is_alive:
            if start_time is None or stat.start_time != int(start_time) or stat.pgrp != pgid:
                _logger.info("pid %d is another process now: not cancelling it", pid)
                return False
        else:
            # The shell is gone; its group may live on. A group id is not reused while the group
            # has members, but check the members belong to the job's session and are younger.
            members = [
                m
                for m in group_members(pgid)
                if m.session == pgid and (start_time is None or m.start_time >= int(start_time))
            ]
            if not members:
                return False
        _logger.info("cancelling local process group %d from its description", pgid)
        return _terminate_group(pgid, self.grace_period)
