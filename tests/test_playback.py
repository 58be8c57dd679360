"""The speaker: a hung sound card (noticed, the conversation goes on, stopping stays clean), and model
audio that is not what it should be (odd-length messages, another sample rate, another encoding), with
the daemon against the stand-in and the PulseAudio card (or the file plugin where timing does not matter)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from harness import ROOT, SpeakerRecorder, read_wav, silence, tone

CONFIG = """
[audio]
input_device = "pv_mic"
output_device = "{speaker}"
[conversation]
follow_up_seconds = {follow_up}
[earcons]
# Off: this file measures the answers' audio at the speaker (tests/test_earcons.py tests the earcons).
enabled = false
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


# -- model audio that is not 24 kHz whole samples ---------------------------------------------------


def conversation_over(d, tmp_path) -> bytes:
    """Waits for the conversation to end (the file plugin writes its tail then); the speaker's output.
    (The stand-in answers 1.5 s of audio into the session, well within the 4 s follow-up window.)"""
    d.wait_for("answer played: listening for a follow-up", timeout=20)
    d.wait_for("no follow-up: conversation over", timeout=10)
    time.sleep(0.3)
    return (tmp_path / "speaker.raw").read_bytes()


@pytest.mark.parametrize("fault", ["samples split between messages", "a stray byte in one message"])
def test_odd_length_audio_messages_play_whole(fault, soundcard, standin, run_daemon, tmp_path):
    reply = read_wav("reply_24k.wav")
    b = standin.behaviour
    b.reply_after_seconds = 1.5
    b.reply_pcm = reply
    if fault == "samples split between messages":
        b.reply_chunk_bytes = 4801  # every message ends inside a sample
    else:
        b.stray_byte_in_chunk = 3
    d = run_daemon(CONFIG.format(speaker="spk_file", follow_up=4.0), extra_env=standin.env())
    start_conversation(d, soundcard)
    played = conversation_over(d, tmp_path)
    assert played.find(reply) >= 0, "the answer did not play whole and in order"
    assert "speaker spk_file" not in d.output  # no failure, no reopening
    assert d.count(r"WARNING pivoice.audio: the Live API sent audio of odd length") == 1  # once, not per message
    assert d.stop()[0] == 0


def dominant_hz(pcm: bytes, rate: int = 24000) -> float:
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


def test_audio_at_another_rate_is_resampled(soundcard, standin, run_daemon, tmp_path):
    b = standin.behaviour
    b.reply_after_seconds = 1.5
    b.reply_pcm = tone(3.0, 440.0, rate=16000)
    b.reply_chunk_bytes = 6400
    b.reply_mime = "audio/pcm;rate=16000"
    d = run_daemon(CONFIG.format(speaker="spk_file", follow_up=4.0), extra_env=standin.env())
    start_conversation(d, soundcard)
    played = np.frombuffer(conversation_over(d, tmp_path), "<i2")
    loud = np.flatnonzero(np.abs(played) > 2000)
    assert loud.size, "nothing was played"
    seconds = (loud[-1] - loud[0]) / 24000
    assert abs(seconds - 3.0) < 0.05, f"{seconds:.2f} s of a 3 s answer"  # not 2 s: not played too fast
    assert abs(dominant_hz(played[loud[0] : loud[-1]].tobytes()) - 440.0) < 3.0
    assert d.count("the Live API sends audio at 16000 Hz: resampled to 24 kHz") == 1
    assert d.stop()[0] == 0


def test_audio_pivoice_cannot_play_is_refused_with_one_warning(soundcard, standin, run_daemon, tmp_path):
    b = standin.behaviour
    b.reply_after_seconds = 1.5
    b.reply_pcm = tone(2.0)
    b.reply_mime = "audio/mpeg"
    d = run_daemon(CONFIG.format(speaker="spk_file", follow_up=4.0), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for(r"WARNING pivoice.audio: the Live API sent audio as 'audio/mpeg', which pivoice cannot play",
               timeout=20)
    d.wait_for("no follow-up: conversation over", timeout=15)
    played = np.frombuffer((tmp_path / "speaker.raw").read_bytes(), "<i2")
    assert np.count_nonzero(np.abs(played) > 2000) == 0, "audio of an unknown format was played"
    assert d.count("which pivoice cannot play") == 1
    assert d.stop()[0] == 0


# -- the model audio filter on its own (fast, in-process) --------------------------------------------


def speech() -> bytes:
    return read_wav("reply_24k.wav")[: 48000 * 2]


def test_split_samples_are_joined_and_stray_bytes_dropped():
    from pivoice.audio.convert import AnswerAudio

    pcm = speech()
    a = AnswerAudio()
    out = b"".join(a.take(pcm[i : i + 999], "audio/pcm;rate=24000") for i in range(0, len(pcm), 999))
    assert out + a.end_turn() == pcm
    # One message with a byte too many, one with a byte too few: the rest stays aligned.
    a = AnswerAudio()
    chunks = [pcm[i : i + 4800] for i in range(0, len(pcm), 4800)]
    chunks[2] += b"\x7f"
    chunks[5] = chunks[5][:-1]
    out = b"".join(a.take(c, None) for c in chunks) + a.end_turn()
    assert len(out) % 2 == 0
    assert out[: 5 * 4800] == pcm[: 5 * 4800]
    assert out[-len(pcm[6 * 4800 :]) :] == pcm[6 * 4800 :]
    # A byte left at the end of a turn does not shift the next turn.
    a = AnswerAudio()
    a.take(pcm[:4801], "audio/pcm")
    a.end_turn()
    assert a.take(pcm[:4800], "audio/pcm") == pcm[:4800]


def test_other_rates_are_resampled_per_turn_and_other_formats_refused():
    from pivoice.audio.convert import AnswerAudio

    a = AnswerAudio()
    tone16 = tone(1.0, 440.0, rate=16000)
    out = b"".join(a.take(tone16[i : i + 640], "audio/pcm;rate=16000") for i in range(0, len(tone16), 640))
    out += a.end_turn()
    assert len(out) // 2 == 24000  # every sample, the resampler's tail included
    assert abs(dominant_hz(out) - 440.0) < 2.0
    assert a.take(b"\0\0" * 100, "audio/pcm;rate=24000") == b"\0\0" * 100  # back at 24 kHz: as it is
    for mime in ("audio/mpeg", "audio/pcm;rate=nonsense", "audio/pcm;rate=16000;channels=2", "audio/pcm;rate=1"):
        assert a.take(b"\0\0" * 100, mime) == b"", mime
