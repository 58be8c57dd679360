"""End to end: a spoken "hey jarvis, ..." through real ALSA PCMs -> pivoice -> the Live stand-in -> speaker."""

from __future__ import annotations

import re
import signal
import threading
import time

import numpy as np
from harness import TEST_KEY, read_wav, silence, tone

CONFIG = """
[audio]
input_device = "pv_mic"
output_device = "{speaker}"
[conversation]
follow_up_seconds = {follow_up}
[live]
model = "gemini-2.5-flash-native-audio-preview-12-2025"
[earcons]
# Off: this file measures the answers' audio at the speaker (tests/test_earcons.py tests the earcons).
enabled = false
[log]
level = "debug"
"""


def test_wake_word_opens_one_session_and_nothing_said_is_lost(soundcard, standin, run_daemon, tmp_path):
    reply = read_wav("reply_24k.wav")
    command = read_wav("command_time_tokyo.wav")
    standin.behaviour.setup_delay = 1.0  # the socket opens a second after the wake word
    standin.behaviour.reply_after_seconds = 3.0
    standin.behaviour.reply_pcm = reply
    d = run_daemon(CONFIG.format(speaker="spk_file", follow_up=2.0), extra_env=standin.env())
    d.wait_for("ready: listening for 'hey jarvis'")

    soundcard.say(silence(1.0) + read_wav("hey_jarvis.wav") + silence(0.15) + command + silence(1.0))
    d.wait_for(r"heard 'hey_jarvis' \(score 0\.\d\d\): connecting", timeout=15)
    d.wait_for("session open in", timeout=10)
    d.wait_for("answer played: listening for a follow-up", timeout=15)
    d.wait_for("no follow-up: conversation over", timeout=10)
    standin.wait_for(lambda: standin.sessions[0].closed_at is not None, 5, "session 1 to close")
    assert len(standin.sessions) == 1

    first = standin.sessions[0]
    # Everything said after the wake word reached the server, sample for sample, though it was said
    # while the connection was still being set up.
    assert bytes(first.audio).find(command) >= 0, "the command did not arrive intact"
    assert first.setup["model"] == "models/gemini-2.5-flash-native-audio-preview-12-2025"  # live.model, not the default
    # The key was used (conftest checks that it appears in no log line).
    assert first.headers.get("x-goog-api-key") == TEST_KEY
    # The reply reached the speaker PCM whole and in order.
    # (ALSA's file plugin writes the file behind the device's buffer: give it a moment.)
    standin.wait_for(lambda: (tmp_path / "speaker.raw").read_bytes().find(reply) >= 0, 2,
                     "the reply to reach the speaker intact")
    # The follow-up window (2 s) passed after the answer, then the session was closed.
    assert first.closed_at - first.replies_started[0] >= 2.0

    # A second wake word opens a second session.
    paris = read_wav("command_paris.wav")
    soundcard.say(read_wav("hey_jarvis_rp.wav") + silence(0.15) + paris + silence(1.0))
    standin.wait_for(lambda: len(standin.sessions) == 2, 15, "a second session")
    standin.wait_for(lambda: bytes(standin.sessions[1].audio).find(paris) >= 0, 10,
                     "the second command to arrive intact")

    code, took = d.stop(signal.SIGTERM)
    assert code == 0, d.output
    assert took < 2.0, f"took {took:.2f} s to stop"
    standin.wait_for(lambda: standin.sessions[1].closed_at is not None, 2, "session 2 to close on stop")
    assert "Traceback" not in d.output


def test_interrupted_stops_playback_within_100ms(soundcard, standin, run_daemon, tmp_path):
    """The server's `interrupted` mid-answer: at most 100 ms of the rest of the turn reaches the speaker."""
    standin.behaviour.reply_after_seconds = 1.5
    standin.behaviour.reply_pcm = tone(6.0)  # continuous, so every sample of it that plays is audible
    standin.behaviour.reply_pace = 0.05  # 200 ms of audio every 50 ms: ahead of playback, as the API is
    d = run_daemon(CONFIG.format(speaker="pv_spk", follow_up=5.0), extra_env=standin.env())
    d.wait_for("ready: listening")

    rec = soundcard.record_speaker(tmp_path / "spk.raw")
    heard = bytearray()
    trigger = {}

    def read_speaker():
        while True:
            chunk = rec.stdout.read1(4800) if hasattr(rec.stdout, "read1") else rec.stdout.read(4800)
            if not chunk:
                return
            heard.extend(chunk)
            if "at" not in trigger:
                loud = np.flatnonzero(np.abs(np.frombuffer(bytes(heard[: len(heard) // 2 * 2]), "<i2")) > 2000)
                # One second of the answer has reached the speaker: the user talks over it now.
                if loud.size and len(heard) // 2 - loud[0] >= 24000:
                    trigger["at"] = len(heard) // 2
                    trigger["sent"] = standin.interrupt_now()

    reader = threading.Thread(target=read_speaker, daemon=True)
    reader.start()
    soundcard.say(silence(0.5) + read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_time_tokyo.wav"))
    d.wait_for("answer interrupted: listening", timeout=25)
    time.sleep(1.0)
    rec.terminate()
    reader.join(3)

    assert "at" in trigger, "the answer never reached the speaker"
    samples = np.frombuffer(bytes(heard[: len(heard) // 2 * 2]), "<i2")
    loud = np.flatnonzero(np.abs(samples) > 2000)
    leak_ms = (loud[-1] - trigger["at"]) / 24
    print(f"audio after the interrupt: {leak_ms:.0f} ms")
    assert leak_ms <= 100, f"{leak_ms:.0f} ms of the interrupted answer still played"
    # The session keeps listening: the microphone still streams after the interruption.
    before = len(standin.sessions[0].audio)
    time.sleep(0.5)
    assert len(standin.sessions[0].audio) > before
    assert standin.sessions[0].closed_at is None
    d.stop()


def test_a_minute_without_the_wake_word_opens_no_session(standin, run_daemon, tmp_path):
    """67 s of unrelated speech in noise, through the real capture path (ALSA file plugin, unpaced)."""
    from test_wake import unrelated_speech_in_noise

    audio = unrelated_speech_in_noise()
    seconds = len(audio) / 32000
    (tmp_path / "mic.raw").write_bytes(audio + silence(1.0))
    d = run_daemon(CONFIG.format(speaker="spk_file", follow_up=2.0).replace("pv_mic", "mic_file"),
                   extra_env=standin.env())
    # The detector logs how much audio it has scored (debug): wait until it has had all of it.
    def scored() -> float:
        return max([float(m.group(1)) for line in d.lines
                    if (m := re.search(r"wake: ([\d.]+) s of audio scored", line))] or [0.0])

    standin.wait_for(lambda: scored() >= seconds + 1, 60, f"{seconds + 1:.0f} s of audio to be scored")
    code, _ = d.stop()
    assert code == 0
    assert standin.sessions == []
    assert d.count("heard '") == 0
