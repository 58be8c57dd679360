"""The alarm: while the state is RINGING (a timer or alarm came due, pivoice/tools/timers.py) the speaker
plays a built-in two-tone pattern, again and again, until the button or the wake word stops it, or for
timers.ring_seconds at most. A transition listener; the state decides, this only follows it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from .audio.format import OUT_RATE
from .states import Event, State, Transition

log = logging.getLogger("pivoice.ringer")


def alarm_sound(level: float = 0.5) -> bytes:
    """One second of the alarm: two short beeps (880 and 660 Hz), then silence; 24 kHz mono s16le."""
    t = np.arange(int(0.15 * OUT_RATE)) / OUT_RATE
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)  # 5 ms edges: no clicks
    beeps = [np.sin(2 * np.pi * f * t) * fade for f in (880.0, 660.0)]
    gap = np.zeros(int(0.05 * OUT_RATE))
    second = np.concatenate([beeps[0], gap, beeps[1]])
    second = np.concatenate([second, np.zeros(OUT_RATE - second.size)])
    return (second * level * 32767).astype("<i2").tobytes()


MIN_GAIN = 0.25  # the alarm is heard even with the volume turned (nearly) all the way down


class Ringer:
    def __init__(self, playback: Any, dispatch, ring_seconds: float, problem=lambda: "",
                 sound: bytes | None = None):
        """`dispatch`: Assistant.dispatch (RING_TIMEOUT; after the ringing, MUTE_TOGGLE to mute again or
        MIC_LOST for a microphone that is still gone). `problem`: what the ERROR state was about."""
        self._playback = playback
        self._dispatch = dispatch
        self._ring_seconds = ring_seconds
        self._problem = problem
        self._sound = sound or alarm_sound()
        self._task: asyncio.Task | None = None
        self._timeout: asyncio.TimerHandle | None = None
        self._was_muted = False
        self._mic_lost = ""  # why the microphone is gone, when it is (it keeps ringing meanwhile)
        self._gain = 1.0

    def on_transition(self, t: Transition) -> None:
        if t.new is State.RINGING and t.old is not State.RINGING:
            self._was_muted = t.old is State.MUTED
            self._mic_lost = "the microphone is unavailable" if (
                t.old is State.ERROR and self._problem() == "the microphone is unavailable") else ""
            self._gain, self._playback.gain = self._playback.gain, max(self._playback.gain, MIN_GAIN)
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._ring(), name="ringing")
            self._timeout = loop.call_later(self._ring_seconds, lambda: self._dispatch(
                Event.RING_TIMEOUT, seconds=self._ring_seconds))
        elif t.new is State.RINGING:
            if t.event is Event.MIC_LOST:
                self._mic_lost = t.info.get("reason") or "the microphone is unavailable"
            elif t.event is Event.MIC_BACK:
                self._mic_lost = ""
        elif t.old is State.RINGING:
            if self._task is not None:
                self._task.cancel()
            if self._timeout is not None:
                self._timeout.cancel()
            self._playback.stop()
            self._playback.gain = self._gain
            loop = asyncio.get_running_loop()
            if self._mic_lost and t.new is State.IDLE:
                loop.call_soon(lambda: self._dispatch(Event.MIC_LOST, reason=self._mic_lost))
            elif self._was_muted and t.new is State.IDLE:
                loop.call_soon(self._dispatch, Event.MUTE_TOGGLE)  # it rang on a muted speaker: muted again

    async def _ring(self) -> None:
        while True:
            if self._playback.idle:
                self._playback.play(self._sound)
            await asyncio.sleep(0.1)
