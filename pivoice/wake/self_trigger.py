"""The self-trigger guard: barge-in without talking to itself, telling a person's wake word from pivoice's
own voice saying it. (Not to be confused with the echo canceller, pivoice/audio/aec.py, which takes the
answer's sound out of the microphone signal; this guard works on wake-word detections.)

The speaker's sound reaches the microphone, and an answer that says "Jarvis" would trigger the wake word
("talks to itself", rhasspy/wyoming-satellite #25, #185). pivoice knows exactly what it plays, so it
runs the same wake-word models on the answer itself (the reference), before it is heard. Where the
reference fires, the playback timeline says when that part comes out of the speaker; a microphone
detection near that moment is the echo and is ignored. A person saying the wake word at any other
moment of the answer interrupts it.

This costs nothing while idle: the reference engine runs only on answer audio, in its own thread, and
is ahead of playback because the Live API sends audio faster than real time.

This is one of two layers. The other, pivoice/audio/aec.py, cancels the answer's echo before the
detector hears it, which is what lets a person's wake word through over a spoken answer. The canceller
needs the first few seconds of the first answer to learn the room, and what it leaves of a loud
echo can still fire the model; this guard covers both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soxr

from ..audio.format import IN_RATE, OUT_RATE, SAMPLE_DTYPE
from ..threadname import name_this_thread
from .openwakeword import OpenWakeWordEngine

log = logging.getLogger("pivoice.wake")

# A microphone detection this close to the moment the reference's detection is heard is the echo.
# Wide on purpose: it absorbs the acoustic delay (audio servers and USB add latency no API reports),
# the capture period (40 ms), and a chunk or two of difference in when a distorted echo crosses the
# threshold.
ECHO_BEFORE = 0.4
ECHO_AFTER = 0.8


class SelfTriggerGuard:
    def __init__(self, engine: Callable[[], OpenWakeWordEngine], threshold: float, heard_at):
        """`engine()`: the engine to score the answer with, asked for at the first answer (the detector's
        twin: WakeDetector.twin_engine); `heard_at(offset)`: when the played stream's sample `offset`
        (24 kHz) is heard, or None."""
        self._make_engine = engine
        self._threshold = threshold
        self._heard_at = heard_at
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="echo",
                                        initializer=name_this_thread)
        self._engine: OpenWakeWordEngine | None = None
        self._resampler: soxr.ResampleStream | None = None
        self._start = 0  # 24 kHz stream offset of the reference audio's first sample since reset
        self._fed = 0  # 16 kHz samples fed since reset
        self.hits: list[int] = []  # 24 kHz stream offsets at which the answer itself says the wake word
        self.ignored = 0  # microphone detections found to be the echo

    def _feed(self, offset: int, pcm: bytes) -> None:
        if self._engine is None:
            self._engine = self._make_engine()
        if self._resampler is None:
            self._resampler = soxr.ResampleStream(OUT_RATE, IN_RATE, 1, dtype="int16")
            self._engine.reset()
            self._start, self._fed = offset, 0
        x = self._resampler.resample_chunk(np.frombuffer(pcm, SAMPLE_DTYPE))
        before = self._fed
        self._fed += x.size
        pending = before % 1280
        for i, scores in enumerate(self._engine.process(x.tobytes())):
            if max(scores.values()) >= self._threshold:
                end16 = before - pending + (i + 1) * 1280  # end of the chunk that fired
                self.hits.append(self._start + end16 * 3 // 2)

    def _reset(self) -> None:
        self._resampler = None

    def reference(self, offset: int, pcm: bytes) -> None:
        """Answer audio queued for playback at stream `offset` (from the event loop; returns at once)."""
        self._pool.submit(self._feed, offset, pcm)

    def reset(self) -> None:
        """Playback was stopped, or a new answer starts: what comes next is a new stream."""
        self._pool.submit(self._reset)

    async def is_echo(self, heard: float) -> bool:
        """Whether a microphone detection of audio heard at `heard` (monotonic) is pivoice's own voice."""
        await asyncio.get_running_loop().run_in_executor(self._pool, lambda: None)  # reference caught up
        for hit in self.hits[-64:]:
            t = self._heard_at(hit)
            if t is not None and t - ECHO_BEFORE <= heard <= t + ECHO_AFTER:
                self.ignored += 1
                log.info("heard the wake word in the answer's own voice: ignored")
                return True
        return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
