"""Earcons: which transition plays which, that none of them sounds like a wake word, WAV files from the
config, and end to end through the paced card: the wake earcon at the speaker right after the detection
(also with no network), the end earcon, and none at all when they are off. (The wake earcon plays while
pivoice listens, when the echo canceller does not run: the Live API hears it as the microphone does.)"""

from __future__ import annotations

import time
import wave

import numpy as np
import pytest
import soxr
from harness import SpeakerRecorder, read_wav, silence

from pivoice.config import EarconSettings
from pivoice.earcons import NAMES, Earcons, builtin
from pivoice.errors import ConfigError
from pivoice.states import Event, State, Transition
from pivoice.wake.openwakeword import OpenWakeWordEngine, builtin_models_dir


def t(old: State, new: State, event: Event) -> Transition:
    return Transition(old, new, event, 1)


@pytest.mark.parametrize("transition, earcon", [
    (t(State.IDLE, State.CONNECTING, Event.WAKE), "wake"),
    (t(State.IDLE, State.CONNECTING, Event.TAP), "wake"),
    (t(State.RESPONDING, State.LISTENING, Event.BARGE_IN), "wake"),
    (t(State.LISTENING, State.IDLE, Event.FOLLOW_UP_TIMEOUT), "end"),
    (t(State.CONNECTING, State.IDLE, Event.BUTTON_DOWN), "end"),
    (t(State.LISTENING, State.ERROR, Event.SESSION_FAILED), "error"),
    (t(State.ERROR, State.ERROR, Event.WAKE), "error"),  # heard, but it cannot answer
    (t(State.IDLE, State.MUTED, Event.MUTE_TOGGLE), "mute"),
    (t(State.MUTED, State.IDLE, Event.MUTE_TOGGLE), "unmute"),
    (t(State.IDLE, State.ERROR, Event.MIC_LOST), None),  # nobody is there to hear about it now
    (t(State.RESPONDING, State.LISTENING, Event.TURN_DONE), None),
    (t(State.MUTED, State.RINGING, Event.TIMER_FIRED), None),  # the alarm is the sound
    (t(State.RINGING, State.IDLE, Event.BUTTON_DOWN), None),
    (t(State.MUTED, State.STOPPED, Event.STOP), None),
    (t(State.LISTENING, State.STOPPED, Event.STOP), None),
])
def test_which_transition_plays_which_earcon(transition, earcon):
    assert Earcons.earcon_for(transition) == earcon


def test_no_builtin_earcon_sounds_like_any_wake_word():
    """Scored by every built-in wake-word model, alone and repeated, at full level: far below any threshold."""
    models = {n: builtin_models_dir() / f"{n}.tflite" for n in ("hey_jarvis", "alexa", "hey_mycroft", "hey_rhasspy")}
    for name in NAMES:
        x = soxr.resample(builtin(name), 24000, 16000)
        pcm = (np.concatenate([np.zeros(8000), np.tile(np.concatenate([x, np.zeros(4000)]), 5), np.zeros(16000)])
               * 32767).astype("<i2").tobytes()
        engine = OpenWakeWordEngine(models)
        top = max(max(s.values()) for s in engine.process(pcm))
        assert top < 0.05, f"the {name} earcon scores {top:.3f}"


def write_wav(path, x: np.ndarray, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat((x * 32767).astype("<i2"), channels).tobytes())


class Taken:
    def __init__(self):
        self.played: list[bytes] = []

    def play(self, pcm: bytes) -> int:
        self.played.append(pcm)
        return 0


def test_wav_earcons_their_volume_and_the_switch(tmp_path):
    ding = np.sin(2 * np.pi * 1000 * np.arange(4410) / 44100) * 0.8  # 0.1 s at 44.1 kHz, stereo
    write_wav(tmp_path / "ding.wav", ding, 44100, 2)
    played = Taken()
    e = Earcons(EarconSettings(wake=str(tmp_path / "ding.wav"), volume=0.5), played)
    e.on_transition(t(State.IDLE, State.CONNECTING, Event.WAKE))
    x = np.frombuffer(played.played[0], "<i2")
    assert abs(x.size - 2400) < 10  # 0.1 s at 24 kHz, mono
    assert 0.35 < np.abs(x).max() / 32767 < 0.45  # 0.8 x the volume 0.5
    e.on_transition(t(State.LISTENING, State.IDLE, Event.FOLLOW_UP_TIMEOUT))
    assert np.array_equal(np.frombuffer(played.played[1], "<i2"),
                          (np.clip(builtin("end") * 0.5, -1, 1) * 32767).astype("<i2"))
    off = Taken()
    Earcons(EarconSettings(enabled=False, wake="/nowhere.wav"), off).on_transition(
        t(State.IDLE, State.CONNECTING, Event.WAKE))
    assert off.played == []


@pytest.mark.parametrize("make, said", [
    (lambda p: p.write_text("not a wav"), r"earcons.error: cannot read .*bad.wav as a WAV file"),
    (lambda p: write_wav(p, np.zeros(24000 * 4), 24000), r"earcons.error: .*bad.wav lasts 4.0 s; an earcon may last 3 s"),
    (None, r"earcons.error: cannot read .*bad.wav as a WAV file \(\[Errno 2\] No such file"),
])
def test_a_wav_earcon_that_cannot_be_used_is_a_config_error_naming_the_key(make, said, tmp_path):
    path = tmp_path / "bad.wav"
    if make is not None:
        make(path)
    with pytest.raises(ConfigError, match=said):
        Earcons(EarconSettings(error=str(path)), Taken())


CONFIG = """
[audio]
input_device = "pv_mic"
output_device = "pv_spk"
[conversation]
follow_up_seconds = {follow_up}
[earcons]
enabled = {enabled}
volume = 1.0
[log]
level = "debug"
"""


def first_note(rec: SpeakerRecorder, t: float, within: float = 2.0) -> tuple[float, float]:
    """The first sound at the speaker's monitor after moment `t`: (ms after `t`, its frequency in Hz)."""
    start = rec.position_at(t)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        loud = np.flatnonzero(np.abs(rec.samples[start:]) > 2000)
        if loud.size and rec.samples.size - start - loud[0] > 1200:
            x = rec.samples[start + loud[0] : start + loud[0] + 1200].astype(np.float64)  # 50 ms
            spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
            return loud[0] / 24, float(np.fft.rfftfreq(x.size, 1 / 24000)[np.argmax(spec)])
        time.sleep(0.01)
    raise AssertionError(f"nothing at the speaker within {within} s")


def test_earcons_play_at_the_speaker_when_they_should_and_never_fire_the_wake_word(soundcard, standin, in_process,
                                                                                 tmp_path):
    """Two conversations, the microphone hearing the speaker at full level: the wake earcon (its first
    note: 659 Hz) plays right after each detection (bench/earcon_latency.py measures how soon), the end
    earcon (988 Hz first) after each conversation, and neither (nor the answers) fires the wake word."""
    standin.behaviour.reply_after_seconds = 1.5
    standin.behaviour.reply_pcm = read_wav("reply_24k.wav")[: 2 * 48000]
    d = in_process(CONFIG.format(enabled="true", follow_up=2.0))
    rec = SpeakerRecorder(soundcard, tmp_path)
    d.wait_event("ready")
    # (No room noise: the stand-in's voice activity would take it for speech and keep the follow-up open.)
    soundcard.feed_back(rec, gain=1.0, delay=0.03, noise_rms=0)
    for n in range(2):
        t0 = time.monotonic()
        soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + read_wav("command_time_tokyo.wav"))
        at = d.wait_event("wake", timeout=10, after=t0)
        ms, hz = first_note(rec, at)
        print(f"conversation {n + 1}: the wake earcon at the speaker's monitor {ms:.0f} ms after the detection")
        assert abs(hz - 659) < 30, f"the first sound after the detection is at {hz:.0f} Hz, not the wake earcon"
        over = d.wait_event("follow_up_timeout", timeout=30, after=at)
        _, hz = first_note(rec, over)
        assert abs(hz - 988) < 30, f"the first sound after the conversation is at {hz:.0f} Hz, not the end earcon"
    assert d.events().count("wake") == 2  # no earcon and no answer fired the wake word
    rec.stop()
    d.stop()
