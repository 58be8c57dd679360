"""Logging: one line per event, with a level, no colours; structured fields ride along on each record.

Call sites pass fields as `extra=fields(event="wake", session=3)`; the stderr format shows them as
`[event=wake session=3]` at the end of the line (a journald handler can turn them into PIVOICE_* fields).

Every registered secret (the API key) is replaced by "[redacted]" in each formatted line, whatever
produced it: a second line of defence behind never putting the key in a message in the first place.

Floods are cut in one place, a filter on the handler (`Flood`): the same event repeated (same logger,
level, message template and event field) is logged FLOOD_BURST times per FLOOD_WINDOW seconds; what is
held back is counted, and one line at the end of the window says how many ("answer interrupted:
listening (and 1494 more like it in 3 s)"). A first occurrence and a different event always get through.
"""

from __future__ import annotations

import atexit
import copy
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLOOD_BURST = 5  # identical events logged per window before the rest are only counted
FLOOD_WINDOW = 10.0  # seconds

_secrets: dict[str, float] = {}  # secret -> time.monotonic() after which it is forgotten


def register_secret(value: str, lifetime: float | None = None) -> None:
    """Redact `value` from every line; for `lifetime` seconds only (an ephemeral token, which expires:
    a speaker or key service that runs for months must not keep every token it ever held)."""
    if value:
        _secrets[value] = math.inf if lifetime is None else time.monotonic() + lifetime


def redact(text: str) -> str:
    now = time.monotonic()
    for s, until in list(_secrets.items()):
        if until < now:
            del _secrets[s]
        elif s in text:
            text = text.replace(s, "[redacted]")
    return text


def fields(**kw: Any) -> dict[str, Any]:
    """`extra=` for a log call: structured fields such as event=, state=, session=, latency_ms=."""
    return {"pivoice": {k: v for k, v in kw.items() if v is not None}}


# syslog priorities, for the "<N>" prefix that journald reads from a service's stderr
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class LineFormatter(logging.Formatter):
    def __init__(self, timestamps: bool, priority_prefix: bool):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s" if timestamps
                         else "%(levelname)s %(name)s: %(message)s")
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = getattr(record, "pivoice", None)
        if extra:
            text += " [" + " ".join(f"{k}={v}" for k, v in extra.items()) + "]"
        # One record, one line: a traceback (only ever for a bug) is folded onto it.
        text = redact(text).replace("\n", " | ")
        if self.priority_prefix:
            text = f"<{PRIORITY.get(record.levelno, 6)}>{text}"
        return text


@dataclass
class _Run:
    start: float  # when the window began
    passed: int = 1  # records logged in this window
    held: int = 0  # records held back (counted) in this window
    last: logging.LogRecord | None = None  # the newest one held back
    last_at: float = 0.0


class Flood(logging.Filter):
    """A handler's filter that rate-limits repeated identical events (see the module docstring).

    Records carry their template as `record.msg`, or as `record.template` when the caller formats the
    message itself (the assistant's transition lines). The summary of a window is the newest held-back
    record with "(and N more like it in T s)" appended, logged by a timer when the window ends."""

    def __init__(self, handler: logging.Handler, burst: int = FLOOD_BURST, window: float = FLOOD_WINDOW):
        super().__init__()
        self.handler = handler
        self.burst = burst
        self.window = window
        self._lock = threading.Lock()
        self._runs: dict[tuple, _Run] = {}
        self._timers: dict[tuple, threading.Timer] = {}

    @staticmethod
    def key(record: logging.LogRecord) -> tuple:
        template = getattr(record, "template", None) or record.msg
        if not str(template).replace("%s", "").strip():  # a bare "%s": the text is the message
            try:
                template = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format call: the handler reports it, not the filter
                pass
        event = (getattr(record, "pivoice", None) or {}).get("event")
        return record.name, record.levelno, str(template), event

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "flood_summary", False):
            return True
        key = self.key(record)
        now = time.monotonic()
        with self._lock:
            run = self._runs.get(key)
            if run is None or (now - run.start >= self.window and not run.held):
                if len(self._runs) > 512:
                    self._forget(now)
                self._runs[key] = _Run(now)
                return True
            if run.passed < self.burst and now - run.start < self.window:
                run.passed += 1
                return True
            run.held += 1
            run.last, run.last_at = record, now
            if key not in self._timers:
                timer = threading.Timer(max(0.0, run.start + self.window - now), self._summarise, (key,))
                timer.daemon = True
                self._timers[key] = timer
                timer.start()
        return False

    def _forget(self, now: float) -> None:
        for k in [k for k, r in self._runs.items() if now - r.start >= self.window and not r.held]:
            del self._runs[k]

    def _summarise(self, key: tuple) -> None:
        """End of a window with records held back: one line for them. The flood may go on, so the next
        window logs nothing new until it has passed quietly."""
        with self._lock:
            self._timers.pop(key, None)
            run = self._runs.get(key)
            if run is None or not run.held or run.last is None:
                return
            self._runs[key] = _Run(time.monotonic(), passed=self.burst)
        summary = copy.copy(run.last)
        text = run.last.getMessage()
        if run.held > 1:
            text += f" (and {run.held - 1} more like it in {run.last_at - run.start:.0f} s)"
        summary.msg, summary.args, summary.flood_summary = text, None, True
        summary.created = time.time()  # logged now: its time is now, the text says how long it went on
        summary.msecs = summary.created % 1 * 1000
        self.handler.handle(summary)

    def flush(self) -> None:
        """Log what is held back now (at exit)."""
        with self._lock:
            pending = list(self._timers.items())
        for key, timer in pending:
            timer.cancel()
            self._summarise(key)


_flood: Flood | None = None


@atexit.register
def _flush_flood() -> None:
    if _flood is not None:
        _flood.flush()


JOURNAL_SOCKET = Path("/run/systemd/journal/socket")


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
        self.fallback = LineFormatter(timestamps=False, priority_prefix=True)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = redact(self.format(record)).replace("\n", " | ")
            if JOURNAL_SOCKET.exists():
                from systemd import journal  # type: ignore[attr-defined]  # systemd-python has no type hints

                extra = getattr(record, "pivoice", None) or {}
                fields = {f"PIVOICE_{k.upper()}": redact(str(v)) for k, v in extra.items()}
                journal.send(
                    message,
                    PRIORITY=str(PRIORITY.get(record.levelno, 6)),
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


def _stderr_is_journal() -> bool:
    """True when stderr is connected to journald (systemd sets JOURNAL_STREAM=dev:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup(level: str = "info") -> None:
    """Under systemd: journald with structured fields. Otherwise: stderr lines."""
    if started_by_systemd():
        handler: logging.Handler = JournalHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        journal = _stderr_is_journal()
        handler.setFormatter(LineFormatter(timestamps=not journal, priority_prefix=journal))
    global _flood
    _flood = Flood(handler)
    handler.addFilter(_flood)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    set_level(level)
    # Libraries' chatter stays out of the log unless asked for.
    for noisy in ("websockets", "google_genai", "httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_level(level: str) -> None:
    logging.getLogger("pivoice").setLevel(level.upper())
    logging.getLogger().setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
