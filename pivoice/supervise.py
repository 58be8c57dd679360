"""Keeping a long-running part of the daemon going when it fails with a bug."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .logs import fields

log = logging.getLogger("pivoice.assistant")

CRASHES_ALLOWED = 5  # within CRASH_WINDOW seconds, then the daemon ends (exit 70; systemd restarts it)
CRASH_WINDOW = 60.0
RESTART_PAUSE = 1.0


async def supervise(part: Callable[[], Awaitable[None]], name: str, crashed: Callable[[str], None]) -> None:
    """Run `part`; when it fails (a bug), log the cause, tell `crashed(name)` and start it again. Five
    failures within a minute re-raise the last: a loop of the same crash helps no one."""
    failures: list[float] = []
    while True:
        try:
            await part()
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in the part: logged with its traceback, then restarted
            now = time.monotonic()
            failures = [t for t in failures if now - t < CRASH_WINDOW] + [now]
            log.exception("%s failed (a bug: please report it with this log); restarting it", name,
                          extra=fields(event="crash"))
            if len(failures) >= CRASHES_ALLOWED:
                raise
            crashed(name)
            await asyncio.sleep(RESTART_PAUSE)
