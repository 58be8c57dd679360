"""Echo cancellation end to end, through the paced PulseAudio card: the daemon's real playback and capture
threads and clocks, the speaker fed back into the microphone. (tests/test_aec.py checks the canceller
itself on a simulated room; tests/test_gpio.py that a person's wake word stops an answer that says it.)"""

from __future__ import annotations

import logging
import re
import time

import numpy as np
from harness import SpeakerRecorder, alignment, read_wav, silence
from test_gpio import CONFIG, start_answer

from pivoice.audio.capture import RATE, WANT

FRAME = WANT.params(RATE, 1).period_frames  # the capture frame: what pivoice sends or holds whole


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


def where_in_feed(fed: np.ndarray, sent: np.ndarray, block: int = FRAME) -> list[int | None]:
    """For each `block` samples the Live API received, where in the microphone's feed they are, sample for
    sample (None: nowhere: audio pivoice changed, such as echo-cancelled audio)."""
    out: list[int | None] = []
    guess = 0
    for i in range(0, sent.size - block + 1, block):
        b = sent[i : i + block]
        if not np.array_equal(fed[guess : guess + block], b):
            found = [j for j in np.flatnonzero(fed[: fed.size - block + 1] == b[0]) if np.array_equal(fed[j : j + block], b)]
            guess = found[0] if found else None
        out.append(guess)
        guess = guess + block if guess is not None else 0
    return out


def test_barge_in_by_wake_word_sends_nothing_while_an_answer_plays(mock_pins, soundcard, standin, in_process,
                                                                  tmp_path):
    """audio.barge_in = "wake_word", the speaker heard by the microphone at full level: the Live API gets the
    microphone as it was (sample for sample) outside the answers and nothing of it while they play, and
    neither answer is cut short by its own voice."""
    b = standin.behaviour
    b.reply_after_seconds = 5
    b.reply_pcm = read_wav("reply_24k.wav")[: 3 * 48000]
    b.max_replies = 2
    d = in_process(CONFIG.format(follow_up=8).replace("[gpio]", 'barge_in = "wake_word"\n[gpio]'))
    rec = SpeakerRecorder(soundcard, tmp_path)
    answers: list[list[int]] = []  # feed positions where each answer began and ended
    d.assistant.listeners.append(lambda t: answers.append([len(soundcard.fed) // 2]) if t.new.value == "responding"
                                 else answers[-1].append(len(soundcard.fed) // 2) if t.old.value == "responding"
                                 else None)
    d.wait_event("ready")
    soundcard.feed_back(rec, gain=1.0, delay=0.03, noise_rms=150)
    soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_time_tokyo.wav"))
    deadline = time.monotonic() + 40
    while not (len(answers) == 2 and len(answers[-1]) == 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(answers) == 2 and len(answers[-1]) == 2, answers
    time.sleep(1.0)  # what the microphone heard after the second answer reaches the stand-in
    events = d.events()
    assert "barge_in" not in events and "interrupted" not in events, events
    assert all(end - start > 2.5 * 16000 for start, end in answers), answers  # both played to their end
    sent = np.frombuffer(bytes(standin.sessions[0].audio), "<i2")  # (first: all it holds is in the feed)
    fed = np.frombuffer(bytes(soundcard.fed), "<i2")
    # The pre-roll's first frame may be cut anywhere: line the blocks up on the feed from the first one.
    start = where_in_feed(fed, sent[:FRAME])[0]
    assert start is not None
    first = (FRAME - start % FRAME) % FRAME
    places = where_in_feed(fed, sent[first:])
    assert None not in places, "the Live API got audio that is not the microphone's as it was (echo-cancelled?)"
    inside = [p for p in places if any(s + 1280 <= p and p + FRAME <= e - 1280 for s, e in answers)]
    assert not inside, f"{len(inside)} blocks of the microphone sent while an answer played"
    after = [p for p in places if p >= answers[0][1]]
    assert after, "nothing sent after the first answer (the follow-up is not heard)"
    rec.stop()
    d.stop()


def test_a_wake_word_over_an_answer_sends_what_was_said_from_its_pre_roll(mock_pins, soundcard, standin,
                                                                        in_process, tmp_path):
    """audio.barge_in = "wake_word": nothing of the microphone went out while the answer played, so when a
    person's wake word stops it, what they said from the pre-roll on goes out from the ring: the wake word
    and the words right after it are not lost."""
    d = in_process(CONFIG.format(follow_up=5).replace("[gpio]", 'barge_in = "wake_word"\n[wake]\n'
                                                                 'pre_roll_seconds = 1.0\n[gpio]'))
    rec = start_answer(d, soundcard, standin, read_wav("reply_24k.wav") * 3, tmp_path)  # 15.6 s
    soundcard.feed_back(rec, gain=0.5, delay=0.03, noise_rms=150)
    time.sleep(6.0)  # the canceller has learnt the room
    before = len(standin.sessions[0].audio)
    person = read_wav("hey_jarvis_rp.wav") + read_wav("command_time_tokyo.wav")
    spoke = time.monotonic()
    soundcard.say(person + silence(0.5))
    d.wait_event("barge_in", timeout=5, after=spoke)
    standin.wait_for(lambda: len(standin.sessions[0].audio) - before >= len(person), 10, "the person's words")
    sent = np.frombuffer(bytes(standin.sessions[0].audio[before:]), "<i2")
    heard, lag = alignment(np.frombuffer(person, "<i2"), sent)
    wake = np.abs(np.frombuffer(read_wav("hey_jarvis_rp.wav"), "<i2"))
    voiced_end = int(np.flatnonzero(wake > 0.1 * wake.max())[-1])  # the clip's last loud sample: "...vis"
    before_end = voiced_end - lag  # how much of what was sent comes before the wake word's last sound
    print(f"what the Live API got correlates {heard:.3f} with what the person said, from "
          f"{before_end / 16:.0f} ms before the wake word's last sound")
    assert heard >= 0.8
    # Sent live from the detection on, it would start after the wake word; from the ring, a second before
    # the detection (wake.pre_roll_seconds here), well before the wake word's last sound.
    assert before_end >= 0.3 * 16000, "what was said right after the wake word did not all reach the Live API"
    rec.stop()
    d.stop()
