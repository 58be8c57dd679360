"""Log lines: one line per record, fields appended, secrets redacted whatever produced them."""

import base64
import json
import logging
import re
import time

from harness import read_wav, silence, tone

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


def test_an_expiring_secret_is_redacted_until_it_is_forgotten():
    """Ephemeral tokens: redacted while they live, then dropped, so months of tokens do not pile up."""
    import time

    logs.register_secret("auth_tokens/short-lived", lifetime=0.2)
    assert logs.redact("token auth_tokens/short-lived") == "token [redacted]"
    time.sleep(0.3)
    logs.redact("any line")
    assert "auth_tokens/short-lived" not in logs._secrets


def test_fields_and_journal_priority():
    f = logs.LineFormatter(timestamps=False, priority_prefix=True)
    line = f.format(record("wake", **logs.fields(event="wake", session=2, latency_ms=None)))
    assert line == "<3>ERROR pivoice.test: wake [event=wake session=2]"


# -- floods ----------------------------------------------------------------------------------------


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def flood_logger(window: float) -> tuple[logging.Logger, Collect]:
    handler = Collect()
    handler.addFilter(logs.Flood(handler, burst=3, window=window))
    logger = logging.getLogger(f"pivoice.test.flood{window}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger, handler


def test_a_flood_is_cut_and_counted_but_first_and_distinct_events_get_through():
    log, out = flood_logger(window=0.5)
    for i in range(100):
        log.info("answer interrupted: listening", extra=logs.fields(event="interrupted", session=1))
        if i == 50:
            log.info("answering", extra=logs.fields(event="model_audio"))  # a different event
            log.info("peak %s", i, extra=logs.fields(event="stats"))  # another
    log.warning("answer interrupted: listening", extra=logs.fields(event="interrupted"))  # another level
    assert out.lines == ["answer interrupted: listening"] * 3 + ["answering", "peak 50", "answer interrupted: listening"]
    deadline = time.monotonic() + 10
    while len(out.lines) < 7 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert re.fullmatch(r"answer interrupted: listening \(and 96 more like it in \d s\)", out.lines[6]), out.lines
    # The flood goes on in the next window: counted again, nothing new logged in between.
    for _ in range(10):
        log.info("answer interrupted: listening", extra=logs.fields(event="interrupted"))
    assert len(out.lines) == 7
    while len(out.lines) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert out.lines[7].startswith("answer interrupted: listening (and 9 more like it in")
    # After a quiet window the next one is logged at once.
    time.sleep(0.6)
    log.info("answer interrupted: listening", extra=logs.fields(event="interrupted"))
    assert out.lines[8] == "answer interrupted: listening"


def test_messages_formatted_by_the_caller_are_keyed_on_their_template():
    log, out = flood_logger(window=30.0)
    for score in range(10):
        log.info(f"heard 'hey_jarvis' (score 0.{score})", extra={**logs.fields(event="wake"),
                                                                  "template": "heard {name!r} (score {score:.2f})"})
    for n in range(10):
        log.info(f"distinct text {n}")  # no template, no event: each text is its own
    assert len(out.lines) == 3 + 10


def test_interruption_flood_from_the_live_api(soundcard, standin, run_daemon):
    """1,500 `interrupted` messages (each after a bit of answer) in a few seconds: a few lines and a count,
    not thousands of lines."""
    standin.behaviour.reply_after_seconds = None
    d = run_daemon('[audio]\ninput_device = "pv_mic"\noutput_device = "spk_file"\n', extra_env=standin.env())
    d.wait_for("ready: listening")
    soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(2.0))
    d.wait_for("session open in", timeout=20)
    audio = {"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(tone(0.02)).decode()}}]}}}
    standin.send_now([json.dumps(audio), json.dumps({"serverContent": {"interrupted": True}})] * 1500)

    def total(text: str) -> int:
        plain = d.count(rf"INFO pivoice.assistant: {text} \[")
        held = [int(m) for line in d.lines for m in re.findall(rf"{text} \(and (\d+) more like it in \d+ s\)", line)]
        return plain + sum(n + 1 for n in held)

    deadline = time.monotonic() + 40
    while (total("answer interrupted: listening") < 1500 or total("answering") < 1500) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert total("answer interrupted: listening") == 1500
    assert total("answering") == 1500
    first = d.lines.index(next(line for line in d.lines if "answer interrupted: listening" in line))
    assert "(and" not in d.lines[first]  # the first one is logged as it happens
    assert len(d.lines) < 60, f"{len(d.lines)} lines"
    assert d.stop()[0] == 0
