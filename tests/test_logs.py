"""Log lines: one line per record, fields appended, secrets redacted whatever produced them."""

import logging

from pivoice import logs


def record(msg, *args, exc=None, **extra):
    r = logging.LogRecord("pivoice.test", logging.ERROR, __file__, 1, msg, args, exc)
    for k, v in extra.items():
        setattr(r, k, v)
    return r


def test_secret_is_redacted_even_inside_a_traceback():
    logs.register_secret("sekret-key-123")
    f = logs.LineFormatter(timestamps=False, priority_prefix=False)
    try:
        raise RuntimeError("bad header x-goog-api-key: sekret-key-123")
    except RuntimeError:
        import sys

        line = f.format(record("failed with %s", "sekret-key-123", exc=sys.exc_info()))
    assert "sekret-key-123" not in line
    assert "[redacted]" in line
    assert "\n" not in line


def test_fields_and_journal_priority():
    f = logs.LineFormatter(timestamps=False, priority_prefix=True)
    line = f.format(record("wake", **logs.fields(event="wake", session=2, latency_ms=None)))
    assert line == "<3>ERROR pivoice.test: wake [event=wake session=2]"
