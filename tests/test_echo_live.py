"""Echo cancellation end to end, through the paced PulseAudio card: the daemon's real playback and capture
threads and clocks, the speaker fed back into the microphone. (tests/test_aec.py checks the canceller
itself on a simulated room; tests/test_gpio.py that a person's wake word stops an answer that says it.)"""

from __future__ import annotations

import logging
import re
import time

import numpy as np
from harness import SpeakerRecorder, read_wav, silence
from test_gpio import CONFIG


def test_each_answer_of_a_conversation_is_cancelled_from_its_start(mock_pins, soundcard, standin, in_process,
                                                                   tmp_path):
    """Four answers, seconds apart: each is a new playback stream, placed in time by its own clock. What
    the Live API receives while pivoice answers has the echo taken out, from half a second into each (and
    into each restart of the playback stream within it)."""
    standin.behaviour.reply_after_seconds = 8  # the next answer 8 s of microphone audio after the last began
    standin.behaviour.reply_pcm = read_wav("reply_24k.wav")  # 5.2 s
    standin.behaviour.reply_pace = 0.05
    standin.behaviour.max_replies = 4
    trace: list[str] = []  # what the canceller logs (shown when the test fails)

    class Trace(logging.Handler):
        def emit(self, record):
            trace.append(f"{record.created % 1000:8.3f} {record.getMessage()}")

    handler = Trace(logging.DEBUG)
    logging.getLogger("pivoice.audio").addHandler(handler)
    logging.getLogger("pivoice.audio").setLevel(logging.DEBUG)
    d = in_process(CONFIG.format(follow_up=15))
    rec = SpeakerRecorder(soundcard, tmp_path)
    answers: list[list[int]] = []  # microphone feed positions (samples) where each answer began and ended
    d.assistant.listeners.append(lambda t: answers.append([len(soundcard.fed) // 2]) if t.new.value == "responding"
                                 else answers[-1].append(len(soundcard.fed) // 2) if t.old.value == "responding"
                                 else None)
    d.wait_event("ready")
    soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_time_tokyo.wav"))
    d.wait_event("model_audio", timeout=20)
    soundcard.feed_back(rec, gain=1.0, delay=0.03, noise_rms=150)
    deadline = time.monotonic() + 45
    while not (len(answers) == 4 and len(answers[-1]) == 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(answers) == 4 and len(answers[-1]) == 2, answers
    fed = np.frombuffer(bytes(soundcard.fed), "<i2").astype(np.float64)
    sent = np.frombuffer(bytes(standin.sessions[0].audio), "<i2").astype(np.float64)
    # Where the session's audio sits in the microphone feed: its pre-roll is the feed, sample for sample.
    probe = sent[1000:9000]
    offset = next(i for i in range(fed.size - probe.size) if np.array_equal(fed[i : i + probe.size], probe)) - 1000
    # The microphone's audio reaches the stand-in a little after it was fed (on a loaded machine, more):
    # wait for the end of the last answer there, and compare only what arrived.
    standin.wait_for(lambda: len(standin.sessions[0].audio) // 2 + offset >= answers[-1][1], 10,
                     "the microphone's audio up to the last answer's end at the stand-in")
    sent = np.frombuffer(bytes(standin.sessions[0].audio), "<i2").astype(np.float64)
    spans = [(start, min(end, offset + sent.size)) for start, end in answers[:4]]
    # A playback underrun (a loaded machine) restarts the stream mid-answer: the canceller places the new
    # stream by its clock and has half a second to settle, as at an answer's start. Positions in the feed:
    # the microphone counts the same paced samples, so feed = microphone + one constant.
    streams = [int(m) for m in re.findall(r"new playback stream \d+ at microphone (\d+)", "\n".join(d.assistant.aec.events))]
    shift = answers[0][0] - streams[0]
    less, windows = [], []
    for start, end in spans:
        keep = np.zeros(fed.size, bool)
        keep[start + 8000 : end] = True  # from half a second in
        for m in streams:
            if start + 4000 < m + shift < end:  # a restart within this answer, with a quarter second's margin
                keep[m + shift - 4000 : m + shift + 12000] = False
        a = np.flatnonzero(keep)
        less.append(10 * np.log10(np.sum(fed[a] ** 2) / np.sum(sent[a - offset] ** 2)))
        windows.append(" ".join(f"{10 * np.log10(np.sum(fed[i : i + 4000] ** 2) / np.sum(sent[i - offset : i - offset + 4000] ** 2)):.0f}"
                                for i in range(start, end - 4000, 4000)))
    logging.getLogger("pivoice.audio").removeHandler(handler)
    epochs = [(e.first, round(e.offset % 1000, 4), e.end, round(e.correction * 16000, 2)) for e in d.assistant.aec._epochs]
    detail = "\n".join(["per 0.25 s:", *windows, f"epochs {epochs}", *trace, *d.assistant.aec.events])
    print("echo at the Live API below the microphone's, per answer (dB):", " ".join(f"{x:.1f}" for x in less))
    print(detail)
    assert min(less[1:]) >= 15, detail  # the first answer is where the canceller learns the room
    rec.stop()
    d.stop()
