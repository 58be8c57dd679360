"""Devices that are not there yet when pivoice starts: a USB microphone plugged in later, a HAT whose driver
loads late at boot, a sound server that starts after the service. pivoice starts anyway, says what is
missing (log, STATUS=, the ERROR state), waits for it, and listens once it is there. Only a device name
that can never work is a configuration error (exit 78, which systemd does not restart)."""

from __future__ import annotations

import time

import pytest
from harness import SoundCard, read_wav, silence

CONFIG = """
[audio]
input_device = "{mic}"
output_device = "{speaker}"
[log]
level = "debug"
"""


@pytest.mark.parametrize("mic,reason", [
    ("hw:7", r"audio.input_device: cannot open the ALSA capture device 'hw:7'"),
    ("plughw:CARD=seeed2micvoicec,DEV=0", r"audio.input_device: the sound card that the ALSA capture device "
                                          r"'plughw:CARD=seeed2micvoicec,DEV=0' needs is not there"),
    ("sysdefault:CARD=usbmic", r"audio.input_device: the sound card that the ALSA capture device 'sysdefault:CARD=usbmic' needs is "
                               r"not there"),
])
def test_an_absent_microphone_is_waited_for_not_given_up_on(mic, reason, run_daemon, notify_socket):
    d = run_daemon(CONFIG.format(mic=mic, speaker="spk_file"),
                   extra_env={"NOTIFY_SOCKET": str(notify_socket.path)})
    d.wait_for(r"ERROR pivoice.assistant: " + reason + r".*pivoice keeps trying to open it", timeout=15)
    time.sleep(3)  # a few attempts to open it
    assert d.proc.poll() is None, f"pivoice exited ({d.proc.returncode}):\n{d.output}"
    notify_socket.wait_last("READY=1", "READY=1")
    assert notify_socket.lines("READY=1") == ["READY=1"]
    notify_socket.wait_last("STATUS=", "STATUS=Error: the microphone is unavailable — see journalctl -u pivoice")
    assert d.count("ERROR") == 1, d.output  # one line, not one per attempt
    assert d.stop()[0] == 0
    assert "Traceback" not in d.output


def test_an_absent_speaker_does_not_stop_listening(run_daemon, tmp_path):
    (tmp_path / "mic.raw").write_bytes(silence(2.0))
    d = run_daemon(CONFIG.format(mic="mic_file", speaker="plughw:CARD=usbspeaker"))
    d.wait_for(r"ERROR pivoice.assistant: audio.output_device: the sound card that the ALSA playback device "
               r"'plughw:CARD=usbspeaker' needs is not there.*Answers are not heard until it is there", timeout=15)
    d.wait_for("ready: listening")
    assert d.proc.poll() is None
    assert d.stop()[0] == 0


def test_a_microphone_that_appears_later_is_listened_to(home, standin, run_daemon, notify_socket):
    """The sound server (and so the microphone) comes up after pivoice: it starts, waits, then a wake word
    said once the microphone is there opens a conversation."""
    d = run_daemon(CONFIG.format(mic="pv_mic", speaker="spk_file"),
                   extra_env={**standin.env(), "NOTIFY_SOCKET": str(notify_socket.path)})
    d.wait_for(r"ERROR pivoice.assistant: audio.input_device: the ALSA capture device 'pv_mic' goes to a "
               r"PulseAudio/PipeWire sound server that is not running", timeout=15)
    notify_socket.wait_last("READY=1", "READY=1")
    assert notify_socket.lines("READY=1") == ["READY=1"]
    time.sleep(2)
    card = SoundCard(home).start()
    try:
        d.wait_for("the microphone is back: listening for the wake word", timeout=20)
        notify_socket.wait_last("STATUS=", "STATUS=Listening for 'hey jarvis'")
        card.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.5))
        standin.wait_for(lambda: len(standin.sessions) == 1, 15, "a session once the microphone is there")
        assert d.stop()[0] == 0
    finally:
        card.stop()
    assert "Traceback" not in d.output


def test_a_wake_word_in_the_first_second_after_ready_loses_nothing(soundcard, standin, run_daemon, notify_socket):
    """The Live client (google-genai) is made after READY=1, off the audio path: a wake word said at once
    opens a conversation, and every word after it reaches the Live API, though the client may still be
    in the making when the wake word is heard."""
    command = read_wav("command_time_tokyo.wav")
    standin.behaviour.reply_after_seconds = None
    d = run_daemon(CONFIG.format(mic="pv_mic", speaker="spk_file"),
                   extra_env={**standin.env(), "NOTIFY_SOCKET": str(notify_socket.path)})
    deadline = time.monotonic() + 30
    while not notify_socket.lines("READY=1") and time.monotonic() < deadline:
        time.sleep(0.005)
    assert notify_socket.lines("READY=1"), d.output
    soundcard.say(read_wav("hey_jarvis.wav") + silence(0.15) + command + silence(0.5))
    standin.wait_for(lambda: standin.sessions and bytes(standin.sessions[0].audio).find(command) >= 0, 20,
                     "the command, whole, at the Live API")
    d.wait_for(r"heard 'hey_jarvis'", timeout=5)
    # It was made after READY=1, not before.
    made = d.wait_for("Live API client ready in", timeout=5).string
    assert d.lines.index(made) > next(i for i, x in enumerate(d.lines) if "ready: listening for" in x)
    d.stop()


def test_the_heap_pivoice_starts_with_is_frozen_out_of_the_collectors_walks(soundcard, standin, run_daemon):
    """A full cycle collection walks every tracked object holding the GIL (capture and playback wait):
    what start and google-genai's import made is frozen once each (pivoice/heap.py), so it walks only
    what was made since."""
    standin.behaviour.reply_after_seconds = None
    d = run_daemon(CONFIG.format(mic="pv_mic", speaker="spk_file"), extra_env=standin.env())
    frozen = {}
    for stage in ("start", "google-genai loaded"):
        m = d.wait_for(rf"heap settled \({stage}\) in \d+ ms: (\d+) objects frozen", timeout=15)
        frozen[stage] = int(m.group(1))
    assert frozen["start"] >= 20000 and frozen["google-genai loaded"] >= frozen["start"] + 20000, frozen
    # Still listening and answering with a frozen heap.
    soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.5))
    standin.wait_for(lambda: len(standin.sessions) == 1, 10, "a session")
    assert d.stop()[0] == 0
    assert d.count("heap settled") == 2, d.output


def test_a_stopped_daemon_leaves_nothing_frozen(soundcard, standin, in_process):
    """The heap frozen at start is unfrozen when the daemon stops, so the interpreter's last collection
    frees it: a soxr stream left in a frozen reference cycle makes soxr's bindings print "nanobind: leaked
    1 instances!" at exit, on stderr, which the service sends to the journal."""
    import gc

    standin.behaviour.reply_after_seconds = None
    d = in_process(CONFIG.format(mic="pv_mic", speaker="spk_file"))
    d.wait_event("ready")
    deadline = time.monotonic() + 15
    while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gc.get_freeze_count() > 0, "the daemon froze nothing at start"
    d.stop()
    assert gc.get_freeze_count() == 0


SESSION_SCRIPT = """
import asyncio, json, sys
import pydantic
from google.genai import types
from pivoice.configfile import parse
from pivoice.credentials import ApiKey
from pivoice.live import session as live
from pivoice.live.setup import PreparedClient
from pivoice.tools.registry import Tool

settings = parse({"live": {"base_url": sys.argv[1]}}, "test")

async def get_time(args):
    return {"time": "12:00"}

def models():
    return {n for n in dir(types) if isinstance(getattr(types, n), type)
            and issubclass(getattr(types, n), pydantic.BaseModel) and getattr(types, n).__pydantic_complete__}

async def main():
    clients = PreparedClient(ApiKey("test-key", "test"), settings.live)
    await clients.get()  # what the daemon does right after READY=1
    before, modules, events = models(), set(sys.modules), []
    session = live.LiveSession(clients, settings.live, settings.vad, events.append,
                               tools=[Tool("get_time", "The time.", get_time)], google_search=True)
    task = asyncio.create_task(session.run())
    for i in range(80):  # 3.2 s of audio (the stand-in sends GoAway after 2 s of it)
        session.send_audio(bytes([i, 90]) * 640)
        await asyncio.sleep(0.04)
    await asyncio.sleep(1.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    print(json.dumps({"built": sorted(models() - before), "imported": sorted(set(sys.modules) - modules),
                      "events": [type(e).__name__ for e in events]}))

asyncio.run(main())
"""


def test_the_first_conversation_does_not_build_google_genais_models(standin):
    """google-genai builds each model's validator when first used: the Live session's are built when the
    client is prepared after READY=1 (live/setup.py SESSION_MODELS), not in the first conversation's
    connection. A session with what the daemon declares (a tool, Google Search) and everything a
    conversation receives (an answer with transcriptions, resumption handles, a tool call, GoAway), in a
    fresh process, builds none of them, nor imports the codec its TLS handshake needs."""
    import json
    import os
    import subprocess
    import sys

    from pivoice.live.setup import SESSION_MODELS

    b = standin.behaviour
    b.reply_after_seconds, b.reply_pcm, b.input_transcripts, b.said_text = 0.3, b"\0\1" * 14400, True, "hello"
    b.handles, b.go_away_after_bytes, b.tool_calls = True, 64000, [("c1", "get_time", {})]
    r = subprocess.run([sys.executable, "-c", SESSION_SCRIPT, standin.base_url], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "SSL_CERT_FILE": str(standin.ca_file)})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    print(out["built"], out["imported"], sorted(set(out["events"])))
    assert {"Connected", "Handle", "Heard", "Speaking"} <= set(out["events"]), out["events"]
    assert len(standin.sessions) == 2  # GoAway: the session went on on a second connection
    assert standin.sessions[0].setup.get("tools"), standin.sessions[0].setup  # (what was declared, sent)
    assert not set(out["built"]) & set(SESSION_MODELS)
    assert "encodings.idna" not in out["imported"]
    from google import genai

    if genai.__version__.startswith("3.6."):  # the release SESSION_MODELS was taken from: nothing else either
        assert not out["built"], out["built"]


def test_a_conversation_cancelled_while_the_client_is_made_leaves_it_to_the_next():
    """A wake word right after READY=1 waits for the Live client being made; if that conversation is
    cancelled (interrupted, or its session fails) before the client is ready, the client is still made
    and the next conversation gets it."""
    import asyncio

    from pivoice.configfile import parse
    from pivoice.credentials import ApiKey
    from pivoice.live.setup import PreparedClient

    async def body():
        clients = PreparedClient(ApiKey("test-key", "test"), parse({}, "test").live)
        clients.prepare()  # as the daemon does at READY=1
        first = asyncio.create_task(clients.get())
        await asyncio.sleep(0)  # it waits for the client (made in a worker thread: tens of ms at least)
        assert not first.done()
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        assert first.cancelled()
        return await asyncio.wait_for(clients.get(), 30)

    client = asyncio.run(body())
    assert hasattr(client, "aio")  # a google-genai client
