"""Earcons: short sounds that say what pivoice just did, without words. A transition listener (the state
decides; this only follows it) playing through the speaker, like the answers:

    wake     the wake word (or a tap) was heard: it listens           a rising pair of notes
    end      the conversation is over                                 a falling pair
    error    it cannot answer (a failed conversation, or a wake       two low notes
             word heard while in error)
    mute     the microphone was turned off                            one falling note
    unmute   ... and on again                                         one rising note

[earcons] in the config: a WAV file for any of them instead of the built-in one, their own volume (a
factor on top of the speaker's volume), or none at all. The wake earcon needs no network: it is queued in
the same dispatch that acts on the detection.

Only the wake earcon plays while a session hears the microphone (the person usually goes on talking over
it). The built-in ones are pure tones: nothing like a wake word (tests/test_earcons.py scores them with
every built-in model) and no speech for the Live API. The echo canceller does not take them out: the wake
earcon plays while pivoice listens, when the canceller is not running, and a new playback stream passes
it uncancelled until its first check (after 0.1 s of it, most of an earcon). So a WAV earcon should be
wordless too (config/pivoice.toml says so).
"""

from __future__ import annotations

import logging
import wave
from typing import Any

import numpy as np

from .audio.convert import Converter
from .audio.format import OUT_RATE
from .errors import ConfigError
from .states import IN_CONVERSATION, Event, State, Transition

log = logging.getLogger("pivoice.earcons")

NAMES = ("wake", "end", "error", "mute", "unmute")
MAX_SECONDS = 3.0  # an earcon is short: a longer WAV is refused (it would delay the answer)


def _notes(*notes: tuple[float, float]) -> np.ndarray:
    """(frequency Hz, seconds) one after another, each with soft 8 ms edges (no clicks), 24 kHz."""
    parts = []
    for freq, seconds in notes:
        t = np.arange(int(seconds * OUT_RATE)) / OUT_RATE
        edge = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.008)
        parts.append(np.sin(2 * np.pi * freq * t) * edge)
    return np.concatenate(parts)


def builtin(name: str) -> np.ndarray:
    """The built-in earcon `name` as float samples in -1..1 at 24 kHz (pure tones: nothing like speech)."""
    return {
        "wake": lambda: _notes((659.3, 0.07), (987.8, 0.09)),
        "end": lambda: _notes((987.8, 0.07), (659.3, 0.09)),
        "error": lambda: _notes((220.0, 0.12), (0.0, 0.06), (220.0, 0.12)),
        "mute": lambda: _notes((523.3, 0.1)) * np.linspace(1.0, 0.6, int(0.1 * OUT_RATE)),
        "unmute": lambda: _notes((784.0, 0.1)),
    }[name]()


def load_wav(path: str, key: str) -> np.ndarray:
    """A 16-bit PCM WAV (any rate and channel count) as float samples at 24 kHz mono; a ConfigError naming
    `key` when it cannot be one."""
    try:
        with wave.open(path) as w:
            if w.getsampwidth() != 2:
                raise ConfigError(f"{key}: {path} has {8 * w.getsampwidth()}-bit samples; give a 16-bit PCM WAV "
                                  f"(sox in.wav -b 16 out.wav)")
            if w.getnframes() > MAX_SECONDS * w.getframerate():
                raise ConfigError(f"{key}: {path} lasts {w.getnframes() / w.getframerate():.1f} s; an earcon may "
                                  f"last {MAX_SECONDS:g} s at most")
            pcm = w.readframes(w.getnframes())
            convert = Converter(w.getframerate(), w.getnchannels(), OUT_RATE, 1)
            pcm = convert(pcm) + convert.flush()
    except (OSError, EOFError, wave.Error) as e:
        raise ConfigError(f"{key}: cannot read {path} as a WAV file ({e})") from None
    return np.frombuffer(pcm, "<i2").astype(np.float64) / 32768


class Earcons:
    def __init__(self, settings: Any, playback: Any):
        """`settings`: [earcons]; `playback`: where they play (audio/playback.py)."""
        self.enabled = settings.enabled
        self._playback = playback
        self.sounds: dict[str, bytes] = {}
        if not self.enabled:
            return
        for name in NAMES:
            path = getattr(settings, name)
            x = load_wav(path, f"earcons.{name}") if path else builtin(name)
            self.sounds[name] = (np.clip(x * settings.volume, -1, 1) * 32767).astype("<i2").tobytes()

    def play(self, name: str) -> None:
        if self.enabled:
            self._playback.play(self.sounds[name])

    def on_transition(self, t: Transition) -> None:
        name = self.earcon_for(t)
        if name is not None:
            self.play(name)

    @staticmethod
    def earcon_for(t: Transition) -> str | None:
        if t.event in (Event.WAKE, Event.TAP) and t.old is State.ERROR:
            return "error"  # heard, but it cannot answer
        if (t.new is State.CONNECTING and t.old is not State.CONNECTING) or t.event is Event.BARGE_IN:
            return "wake"
        if t.new is State.ERROR and t.old is not State.ERROR and t.event is not Event.MIC_LOST:
            return "error"
        if t.old in IN_CONVERSATION and t.new is State.IDLE:
            return "end"
        if t.new is State.MUTED and t.old is not State.MUTED:
            return "mute"
        if t.old is State.MUTED and t.new not in (State.MUTED, State.RINGING, State.STOPPED):
            return "unmute"
        return None
