"""Logging: one line per event, with a level, no colours; structured fields ride along on each record.

Call sites pass fields as `extra=fields(event="wake", session=3)`; the stderr format shows them as
`[event=wake session=3]` at the end of the line (a journald handler can turn them into PIVOICE_* fields).

Every registered secret (the API key) is replaced by "[redacted]" in each formatted line, whatever
produced it: a second line of defence behind never putting the key in a message in the first place.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

_secrets: set[str] = set()


def register_secret(value: str) -> None:
    if value:
        _secrets.add(value)


def redact(text: str) -> str:
    for s in _secrets:
        if s in text:
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
    from .systemd import JournalHandler, started_by_systemd

    if started_by_systemd():
        handler: logging.Handler = JournalHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        journal = _stderr_is_journal()
        handler.setFormatter(LineFormatter(timestamps=not journal, priority_prefix=journal))
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
