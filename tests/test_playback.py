"""The speaker: a hung sound card (noticed, the conversation goes on, stopping stays clean), with the
daemon against the stand-in and the PulseAudio card."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
from conftest import ROOT, SpeakerRecorder, read_wav, silence, tone

CONFIG = """
[audio]
input_device = "pv_mic"
output_device = "{speaker}"
[conversation]
follow_up_seconds = {follow_up}
[log]
level = "debug"
"""

FAILED = r"ERROR pivoice.audio: speaker pv_spk \(audio.output_device\) failed: "
HUNG = FAILED + r"it took no audio for \d+ s \(hung or suspended\?\); the answer is dropped; reopening it in {wait} s"


def start_conversation(d, soundcard) -> None:
    d.wait_for("ready: listening")
    soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_time_tokyo.wav"))


def wait_loud(rec: SpeakerRecorder, seconds: float, since: int = 0, timeout: float = 20.0) -> None:
    """Until `seconds` of loud audio have come out of the speaker after recording position `since`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if np.count_nonzero(np.abs(rec.samples[since:]) > rec.level) >= seconds * 24000 * 0.8:
            return
        time.sleep(0.02)
    raise AssertionError(f"not {seconds} s of the answer from the speaker within {timeout} s")


def line_index(d, pattern: str, start: int = 0) -> int:
    """Index of the first log line matching `pattern` from `start` (waits for it)."""
    d.wait_for(pattern, start=start, timeout=20)
    rx = re.compile(pattern)
    return next(i for i in range(start, len(d.lines)) if rx.search(d.lines[i]))


# -- a hung speaker ---------------------------------------------------------------------------------


def test_stop_while_the_speaker_hangs_mid_answer_is_clean(soundcard, standin, run_daemon, tmp_path):
    """SIGTERM while the playback thread waits on a speaker that takes nothing: exit 0, no abort in
    alsa-lib (a PCM closed while another thread was inside a write on it)."""
    b = standin.behaviour
    b.reply_after_seconds = 2.5
    b.reply_pcm = tone(8.0)
    b.reply_pace = 0.05
    rec = SpeakerRecorder(soundcard, tmp_path)
    d = run_daemon(CONFIG.format(speaker="pv_spk", follow_up=10.0), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for("answering", timeout=20)
    wait_loud(rec, 0.5)
    soundcard.hang_speaker()
    time.sleep(2.0)  # the playback thread waits on the speaker now
    code, _ = d.stop()
    rec.stop()
    assert code == 0, d.output
    assert "Assertion" not in d.output and "Traceback" not in d.output and "bad state" not in d.output


def test_a_hung_speaker_is_reported_and_the_conversation_goes_on(soundcard, standin, run_daemon, tmp_path):
    b = standin.behaviour
    b.reply_after_seconds = 6.0  # a new answer 6 s of microphone audio after the last one was sent
    b.reply_pcm = tone(4.0)
    b.reply_pace = 0.05
    b.max_replies = 3
    rec = SpeakerRecorder(soundcard, tmp_path)
    d = run_daemon(CONFIG.format(speaker="pv_spk", follow_up=30.0), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for("answering", timeout=20)
    wait_loud(rec, 0.5)
    soundcard.hang_speaker()
    # One clear line, naming the setting; the answer ends and pivoice listens again.
    failed = line_index(d, HUNG.format(wait=1))
    d.wait_for("answer played: listening for a follow-up", start=failed, timeout=10)
    d.wait_for("speaker pv_spk reopened", start=failed, timeout=10)
    # The sound card works again: the next answer is heard.
    soundcard.hang_speaker(False)
    back = len(rec.samples)
    answering = line_index(d, "answering", start=failed)
    wait_loud(rec, 1.0, since=back)
    done = line_index(d, "answer played: listening for a follow-up", start=answering)
    # It hangs again in the third answer: noticed again, and the wait before reopening starts again
    # from 1 s (it played in between), not 2 s.
    line_index(d, "answering", start=done)
    wait_loud(rec, 0.5, since=len(rec.samples) - 1)
    soundcard.hang_speaker()
    d.wait_for(HUNG.format(wait=1), start=done, timeout=20)
    assert d.count(FAILED) == 2
    code, _ = d.stop()
    rec.stop()
    assert code == 0, d.output
    assert "Traceback" not in d.output


CLOSE_WHILE_HUNG = """
import subprocess, sys, time
import numpy as np
from pivoice.audio.playback import Playback

p = Playback("pv_spk")
p.open()
p.start()
t = np.arange(24000 * 6) / 24000
p.play((np.sin(2 * np.pi * 440 * t) * 10000).astype("<i2").tobytes())
time.sleep(1.0)
subprocess.run(["pactl", "suspend-sink", "speaker", "1"], check=True)
time.sleep(2.0)  # the playback thread is waiting on the speaker
p.close()
print("closed; playback thread alive:", p._thread.is_alive(), flush=True)
"""


def test_closing_playback_while_the_speaker_hangs_waits_for_its_thread(soundcard, home):
    """Playback.close() never closes the PCM under its thread (in a child process: that crash was a
    segfault or an abort)."""
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", CLOSE_WHILE_HUNG], env=env, capture_output=True, text=True,
                       timeout=60)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.returncode
    assert "closed; playback thread alive: False" in r.stdout
