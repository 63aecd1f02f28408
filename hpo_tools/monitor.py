"""DingTalk custom-robot messages: a trial failed, or the experiment has a new best score.

hpo_tools 0.1.x's ``[monitor_config]`` (``url``, ``keyword``, ``at_mobiles``, ``at_user_ids``,
``is_at_all``). A message is posted as the robot API expects::

    {"msgtype": "text", "text": {"content": "<keyword> ..."},
     "at": {"atMobiles": [...], "atUserIds": [...], "isAtAll": false}}

The webhook's ``access_token`` is a secret: the masker hides the URL and the token in every
log line. Sending never fails the trial and never holds it up for long: each post runs in a
daemon thread with a timeout, :meth:`DingTalkNotifier.close` waits for the posts at most that
long, and the first failure is logged once (later ones at DEBUG).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

__all__ = ["MonitorSettings", "DingTalkNotifier", "message_body", "webhook_secrets"]

_logger = logging.getLogger(__name__)

#: Seconds one post may take (connect and answer).
DEFAULT_TIMEOUT = 3.0


@dataclass(frozen=True)
class MonitorSettings:
    """``[monitor_config]``; ``url`` (with its token) is kept out of ``repr``."""

    url: str = field(repr=False)
    keyword: str = ""
    at_mobiles: tuple[str, ...] = ()
    at_user_ids: tuple[str, ...] = ()
    is_at_all: bool = False


def webhook_secrets(url: str) -> list[str]:
    """The URL and its ``access_token`` (for the masker)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return [url, *query.get("access_token", [])]


def message_body(settings: MonitorSettings, text: str) -> dict[str, object]:
    """The robot API's text message; the keyword leads (robots with a keyword drop others)."""
    content = f"{settings.keyword} {text}".strip() if settings.keyword else text
    return {
        "msgtype": "text",
        "text": {"content": content},
        "at": {
            "atMobiles": list(settings.at_mobiles),
            "atUserIds": list(settings.at_user_ids),
            "isAtAll": settings.is_at_all,
        },
    }


class DingTalkNotifier:
    """Posts messages to one webhook, each in a daemon thread.

    Args:
        settings: the webhook and whom to mention.
        timeout: seconds a post may take (default :data:`DEFAULT_TIMEOUT`).
    """

    def __init__(self, settings: MonitorSettings, *, timeout: float | None = None) -> None:
        self.settings = settings
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self._threads: list[threading.Thread] = []
        self._failed = threading.Event()

    def send(self, text: str) -> None:
        """Post ``text`` in the background; returns at once."""
        body = json.dumps(message_body(self.settings, text)).encode("utf-8")
        thread = threading.Thread(target=self._post, args=(body,), name="dingtalk", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(
            self.settings.url, data=body, method="POST",
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"{}")
            if isinstance(answer, dict) and answer.get("errcode", 0) != 0:
                raise ValueError(f"errcode {answer.get('errcode')}: {answer.get('errmsg')}")
        except Exception as err:  # a webhook never fails the trial
            level = logging.DEBUG if self._failed.is_set() else logging.WARNING
            self._failed.set()
            # The URL is not named (the masker would hide it anyway): its token is a secret.
            _logger.log(level, "[monitor_config] message not delivered: %s", err)

    def close(self, timeout: float | None = None) -> None:
        """Wait for the posts in flight, ``timeout`` seconds at most in all (default: one
        post's timeout and a second, so that a post that timed out is logged while the trial
        still logs)."""
        import time

        deadline = time.monotonic() + (self.timeout + 1.0 if timeout is None else timeout)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
