"""systemd integration: sd_notify (READY, STATUS, WATCHDOG, STOPPING, RELOADING) and journald logging.

Both use systemd-python. Both are off, silently, in a foreground run: sd_notify when NOTIFY_SOCKET is
unset, the journal handler when pivoice is not started by systemd (no INVOCATION_ID / JOURNAL_STREAM).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from . import logs
from .states import Event, Listener, State, Transition

log = logging.getLogger("pivoice.systemd")

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")


class Notifier:
    """sd_notify(3) messages to the service manager."""

    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self.watchdog_interval: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if self.enabled and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2  # ping at half the timeout, as sd_watchdog_enabled(3) advises
        self._warned = False
        self.stopping = False  # STOPPING=1 was sent: no more watchdog pings after it

    def send(self, *lines: str) -> None:
        if "STOPPING=1" in lines:
            self.stopping = True
        if not self.enabled:
            return
        from systemd import daemon

        try:
            daemon.notify("\n".join(lines))
        except OSError as e:  # a vanished socket must not take the assistant down
            if not self._warned:
                log.warning("cannot notify systemd (%s); carrying on", e)
                self._warned = True

    async def watchdog(self) -> None:
        """Ping from the event loop: a blocked loop stops the pings, and systemd restarts pivoice."""
        if self.watchdog_interval is None:
            return
        while not self.stopping:  # both run on the event loop: no ping can follow STOPPING=1
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)


def started_by_systemd(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("INVOCATION_ID") or env.get("JOURNAL_STREAM"))


class JournalHandler(logging.Handler):
    """Records to journald with PIVOICE_* fields; to stderr when journald is not there.

    journald can restart under a long-running service: when its socket is missing (systemd-python would
    drop the record silently) or refuses (it would raise), the line goes to stderr instead, which systemd
    also connects to the journal.
    """

    def __init__(self, identifier: str = "pivoice"):
        super().__init__()
        self.identifier = identifier
        self.fallback = logs.LineFormatter(timestamps=False, priority_prefix=True)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = logs.redact(self.format(record)).replace("\n", " | ")
            if JOURNAL_SOCKET.exists():
                from systemd import journal

                extra = getattr(record, "pivoice", None) or {}
                fields = {f"PIVOICE_{k.upper()}": logs.redact(str(v)) for k, v in extra.items()}
                journal.send(
                    message,
                    PRIORITY=str(logs.PRIORITY.get(record.levelno, 6)),
                    SYSLOG_IDENTIFIER=self.identifier,
                    LOGGER=record.name,
                    CODE_FILE=record.pathname, CODE_LINE=record.lineno, CODE_FUNC=record.funcName,
                    **fields,
                )
                return
        except Exception:  # noqa: BLE001 - OSError when journald refuses; the line must get out anyway
            pass
        sys.stderr.write(self.fallback.format(record) + "\n")
        sys.stderr.flush()


def status_listener(notifier: Notifier, wake_words: Callable[[], str]) -> Listener:
    """A transition listener: READY=1 once listening, STATUS= on every state, STOPPING=1 at the end."""

    def on_transition(t: Transition) -> None:
        idle = f"Listening for {wake_words()}"
        if t.new is State.IDLE:
            reason = t.info.get("reason", "")
            if t.event is Event.SESSION_ENDED and reason != "the session ended":
                idle += f" (last conversation failed: {reason}; see journalctl -u pivoice)"
            lines = [f"STATUS={idle}"]
            if t.event is Event.READY:
                lines.insert(0, "READY=1")
            notifier.send(*lines)
        elif t.new is State.CONNECTING:
            notifier.send("STATUS=Wake word heard: connecting to Gemini")
        elif t.new is State.LISTENING:
            notifier.send("STATUS=In conversation: listening")
        elif t.new is State.RESPONDING:
            notifier.send("STATUS=In conversation: answering")
        elif t.new is State.MUTED:
            notifier.send("STATUS=Muted (hold the button to unmute)")
        elif t.new is State.ERROR:
            notifier.send(f"STATUS=Error: {t.info.get('problem', 'see the log')} — see journalctl -u pivoice")
        elif t.new is State.STOPPED:
            notifier.send("STOPPING=1", "STATUS=Stopping")

    return on_transition
