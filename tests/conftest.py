"""Fixtures shared by every test package."""

from __future__ import annotations

import signal
import socket

import pytest

# A test run started in the background of a non-interactive shell (`make test &`, a CI agent's
# job) inherits SIGINT ignored, and every process a test starts would inherit it too: the tests
# that stop a runner or `hpo-tools experiment run` with SIGINT, as NNI and Ctrl-C do, need
# Python's default handling. A handled signal is reset to the default in the processes the
# tests start, where Python installs its KeyboardInterrupt handler again.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now (for NNI experiments)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
