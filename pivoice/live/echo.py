"""`pivoice run --echo`: the whole pipeline with a local echo in place of the Gemini Live API, to check
the microphone, the wake word, the speaker, the LEDs, the buttons and the earcons before a key exists.

An EchoSession stands where a LiveSession would (the assistant drives it the same way): after the wake
word it waits for speech, records it until SILENCE_SECONDS of quiet (or MAX_SECONDS), and "answers" with
that recording played back, then waits for a follow-up as after a real answer. It listens from the
session's start (the wake word in the ring's pre-roll is not part of the question), not during the wake
earcon, and not while it plays back (for as long as the recording lasts, also when that is interrupted).
So: say the wake word, then the question after the chime. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..audio.convert import Converter
from ..audio.format import IN_RATE, OUT_RATE, SAMPLE_DTYPE
from .events import Connected, ModelAudio, Speaking, TurnComplete
from .record import Transcript

log = logging.getLogger("pivoice.live")

SILENCE_SECONDS = 0.8  # quiet after speech that ends the turn
MAX_SECONDS = 10.0  # the longest turn recorded
BEFORE_SECONDS = 0.3  # kept from before the speech began (its first syllable)
CHUNK = OUT_RATE // 5  # 200 ms of answer per ModelAudio, as the Live API sends it
DEAF_AFTER_SOUND = 0.5  # seconds after the session starts (the wake earcon) and after its playback


class EchoClient:
    """Stands in for the Live API client: nothing to prepare."""

    def prepare(self) -> None:
        log.warning("ECHO MODE (pivoice run --echo): no Gemini; after the wake word pivoice plays back what it "
                    "heard, then waits for a follow-up")


class EchoSession:
    def __init__(self, client: Any, live: Any, vad: Any, on_event: Callable[[Any], None], *, number: int = 0,
                 transcript: Transcript | None = None, **_: Any):
        self._on_event = on_event
        self._listening = False  # from the session's start on: the ring's wake word is not the question
        self.number = number
        self.transcript = transcript if transcript is not None else Transcript()
        self.tools_busy = False
        self._closed = asyncio.Event()
        self._heard: list[np.ndarray] = []  # the turn so far (and a little before it)
        self._speaking = False
        self._quiet = 0  # samples of quiet since the last speech
        self._floor = 100.0  # the noise floor's RMS, learnt
        self._deaf_until = 0.0  # deaf until then (time.monotonic()): the wake earcon, its own answer's tail

    async def run(self) -> None:
        try:
            self._listening = True
            self._deaf_until = time.monotonic() + DEAF_AFTER_SOUND  # the wake earcon
            self._on_event(Connected(setup_ms=0.0))
            await self._closed.wait()
        finally:
            self._closed.set()  # (cancelled: the conversation is over; a reply not yet sent is not)

    def activity_start(self) -> None:
        """(Push-to-talk: the button went down.)"""

    def activity_end(self) -> None:
        """The button was released: what was said is the turn."""
        if self._heard:
            self._answer()

    def send_audio(self, pcm: bytes) -> None:
        if not self._listening:
            return  # the ring's audio from before the detection: the wake word itself
        if time.monotonic() < self._deaf_until:
            return
        x = np.frombuffer(pcm, SAMPLE_DTYPE)
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
        loud = rms > 3 * self._floor and rms > 150
        self._heard.append(x)
        if not self._speaking:
            self._floor = 0.95 * self._floor + 0.05 * max(rms, 20.0) if not loud else self._floor
            keep = int(BEFORE_SECONDS * IN_RATE)
            while sum(a.size for a in self._heard) - self._heard[0].size >= keep:
                self._heard.pop(0)
            if loud:
                self._speaking, self._quiet = True, 0
                self._on_event(Speaking())
            return
        self._quiet = 0 if loud else self._quiet + x.size
        if loud:
            self._on_event(Speaking())  # (as the Live API's activity detection: keeps the follow-up open)
        total = sum(a.size for a in self._heard)
        if self._quiet >= SILENCE_SECONDS * IN_RATE or total >= MAX_SECONDS * IN_RATE:
            self._answer()

    def _answer(self) -> None:
        heard = np.concatenate(self._heard)
        self._heard, self._speaking, self._quiet = [], False, 0
        convert = Converter(IN_RATE, 1, OUT_RATE, 1)
        reply = convert(heard.tobytes()) + convert.flush()
        log.info("echo: playing back %.1f s of what it heard", heard.size / IN_RATE)
        self._deaf_until = time.monotonic() + len(reply) / 2 / OUT_RATE + DEAF_AFTER_SOUND  # its own voice
        # As a session's events come: from the event loop, not from inside the assistant's send_audio().
        asyncio.get_running_loop().call_soon(self._reply, reply)

    def _reply(self, reply: bytes) -> None:
        if self._closed.is_set():
            return
        for i in range(0, len(reply), CHUNK * 2):
            self._on_event(ModelAudio(reply[i : i + CHUNK * 2]))
        self._on_event(TurnComplete(generated=True))
