"""Microphone capture: the whole microphone chain, in one thread, one way.

    ALSA device -> 16 kHz mono -> cancel the     -> automatic -> score the   -> suppress -> frames()
                   (converted;    answer's echo     gain         wake word      noise       (the event
                    input_gain_db) (`cancelling`:   (audio.      (`scoring`)    (audio.      loop: ring,
                                   answering)       auto_gain_                  noise_       session)
                                                    dbfs)                       suppression)

The thread reads ALSA (poll, then a non-blocking read). A device that fails or goes silent for
STALL_SECONDS (unplugged, hung) is closed and reopened with a backoff; `on_lost` / `on_back` say when it
goes and when it is back. The assistant sets `cancelling` and `scoring` when its state changes, and
reads `frames()`; it never reaches into the chain.

Scoring in this thread means a frame costs one hand-over to the event loop, with its detection
(bench/wake_cost.py --explain measured the hand-overs: they were most of pivoice's CPU over the bare
wake-word loop). While `idle` (no conversation) frames are handed over IDLE_BATCH at a time, and at once
with a detection, so the loop wakes a few times a second instead of 25. The hand-over is bounded (SLOTS
frames) and the thread waits when it is full: audio is never dropped between the device and the
consumer. On a real device the consumer keeps up; on an unpaced test device (ALSA's file plugin) the
wait paces capture to the consumer.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import select
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..threadname import name_this_thread
from .convert import Converter, amplify
from .device import Opener, Want
from .format import IN_RATE
from .level import LevelWatch
from .ring import Frame

if TYPE_CHECKING:
    from ..wake.detector import Detection
    from .aec import EchoCanceller

log = logging.getLogger("pivoice.audio")

RATE = IN_RATE
WANT = Want(RATE, 1, 40.0, 8)  # 40 ms periods: half a wake-word step (wake/openwakeword.py looks ahead
# half a chunk near a detection), one Live API message


STALL_SECONDS = 3.0  # no audio for this long from a device that should deliver every 40 ms: it is gone
SLOTS = 64  # frames (2.5 s) handed over and not yet taken, before the thread waits
IDLE_BATCH = 8  # frames (320 ms) handed over together while idle (a detection goes at once)
PATIENT_SLACK = 0.003  # s after the second period is due that a patient read wakes (a device may be late)
RETRY_FIRST = 1.0  # seconds before reopening a failed device; doubles up to RETRY_MAX
RETRY_MAX = 10.0


class Capture:
    def __init__(self, device: str, key: str = "audio.input_device",
                 scorer: Callable[[Frame], Detection | None] | None = None,
                 canceller: EchoCanceller | None = None, want: Want = WANT, channel: int | None = None,
                 gain_db: float = 0.0, auto_gain: Callable[[bytes], bytes] | None = None,
                 suppress: Callable[[bytes], bytes] | None = None, patient: Callable[[int], bool] | None = None):
        """`scorer`: the wake-word detector's frame -> detection; `canceller`: the echo canceller. Both run
        in the capture thread, on every frame, while `scoring` / `cancelling` are set. `want`: the format to
        ask the device for; `channel`: of a device with several channels, listen to this one (0 = the
        first) instead of their mix; `gain_db`: audio.input_gain_db; `auto_gain`, `suppress`: automatic gain
        (before the detector) and noise suppression (after it), on every frame (audio/noise.py); `patient`:
        the detector would not score a next frame of that many samples alone (WakeDetector.patient), so while
        idle the thread may sleep through it and read it with the one after (`_rest`)."""
        self.device = device
        self.key = key
        self.channel = channel
        self._opener = Opener("capture", device, key, want)
        self._gain = 10 ** (gain_db / 20)
        self._level = LevelWatch(device)
        self.scorer = scorer
        self.canceller = canceller
        self.auto_gain = auto_gain
        self.suppress = suppress
        self.patient = patient
        self.scoring = False
        self.cancelling = False
        self.answering = False  # an answer plays: the frames read say so (audio.barge_in = "wake_word")
        self._idle = False
        self._awake = threading.Event()  # set when the thread must not rest (a conversation began, stopping)
        self.newest = 0  # sample index of the end of the newest frame read (read from any thread)
        self.on_lost: Callable[[str], Any] | None = None
        self.on_back: Callable[[], Any] | None = None
        self._pcm: Any = None
        self._period_frames, self._rate = 0, RATE
        self._poll: Any = None  # select.poll of the device's descriptors, while it is open
        self._convert: Converter | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: asyncio.Queue[tuple[Frame, Detection | None]] = asyncio.Queue()
        self._slots = threading.BoundedSemaphore(SLOTS)

    @property
    def idle(self) -> bool:
        """No conversation: frames without a detection may wait to go in a batch, and the thread may rest."""
        return self._idle

    @idle.setter
    def idle(self, value: bool) -> None:
        self._idle = value
        if value:
            self._awake.clear()
        else:
            self._awake.set()  # a resting thread reads what is in at once

    def open(self) -> None:
        """Open the device (raises ConfigError/DeviceError with a message naming the key)."""
        pcm, got = self._opener.open()
        if self.channel is not None and self.channel >= got.channels:
            pcm.close()
            raise ConfigError(f"audio.input_channel: it is {self.channel}, but the capture device {self.device} has "
                              f"{got.channels} channel{'s' if got.channels > 1 else ''} (0 is the first); set "
                              f"it lower, or \"mix\"")
        self._convert = None
        if (got.rate, got.channels, got.sample_format) != (RATE, 1, "S16_LE"):
            pick = self.channel if got.channels > 1 else None
            self._convert = Converter(got.rate, got.channels, RATE, 1, in_format=got.sample_format, pick=pick)
        self._period_frames, self._rate = got.period_frames, got.rate
        self._poll = select.poll()
        for fd, mask in pcm.polldescriptors():
            self._poll.register(fd, mask)
        self._pcm = pcm

    def start(self, loop: asyncio.AbstractEventLoop, on_lost: Callable[[str], Any] | None = None,
              on_back: Callable[[], Any] | None = None, lost: bool = False) -> None:
        """Read in a thread from now on. `on_lost(message)` / `on_back()` are called on `loop` when the
        device fails while running (unplugged, an error alsa-lib cannot recover) and when it works again.
        `lost`: the device could not be opened yet (absent or busy at start); the thread keeps trying and
        calls `on_back` once it delivers audio."""
        self.on_lost, self.on_back = on_lost, on_back
        self._thread = threading.Thread(target=self._run, args=(loop, lost), name="capture", daemon=True)
        self._thread.start()

    async def frames(self) -> AsyncIterator[tuple[Frame, Detection | None]]:
        """Every frame captured, in order, with the wake word's detection in it (None when there is none
        or `scoring` was off). Runs until cancelled."""
        while True:
            item = await self._queue.get()
            self._slots.release()
            yield item

    def _put(self, loop: asyncio.AbstractEventLoop, items: list[tuple[Frame, Detection | None]]) -> bool:
        """Hand items to the event loop in one wake-up, waiting while SLOTS are taken. False when stopping."""
        for _ in items:
            while not self._slots.acquire(timeout=0.2):
                if self._stop.is_set():
                    return False
        try:
            loop.call_soon_threadsafe(self._hand_over, items)
        except RuntimeError:  # the loop is gone
            return False
        return True

    def _hand_over(self, items: list[tuple[Frame, Detection | None]]) -> None:
        for item in items:
            self._queue.put_nowait(item)

    def _run(self, loop: asyncio.AbstractEventLoop, lost: bool) -> None:
        name_this_thread()
        index = 0
        batch: list[tuple[Frame, Detection | None]] = []
        wait = RETRY_FIRST
        last_audio = time.monotonic()
        while not self._stop.is_set():
            try:
                if self._pcm is None:
                    self.open()
                    last_audio = time.monotonic()
                if not self._poll.poll(250):
                    if time.monotonic() - last_audio > STALL_SECONDS:
                        raise OSError(f"no audio for {STALL_SECONDS:g} s")
                    continue
                n, data = self._pcm.read()
            except Exception as e:  # noqa: BLE001 - unplugged, busy, I/O error: reopen with backoff
                self._drop_pcm()
                if not lost:
                    lost = True
                    message = getattr(e, "message", None) or f"{e}"
                    self._notify(loop, self.on_lost, f"microphone {self.device} failed ({message}); "
                                                     f"trying to reopen it every {RETRY_MAX:g} s at most")
                self._stop.wait(wait)
                wait = min(wait * 2, RETRY_MAX)
                continue
            if n == -errno.EPIPE:
                log.warning("capture overrun on %s (the system was too busy): a little audio was lost",
                            self.device)
                continue
            if n <= 0 or not data:
                if time.monotonic() - last_audio > STALL_SECONDS:
                    self._drop_pcm()  # polled ready but never delivering: reopen
                continue
            last_audio = time.monotonic()
            if lost:
                lost, wait = False, RETRY_FIRST
                self._notify(loop, self.on_back)
            if self._convert is not None:
                data = self._convert(data)
            if self._gain != 1.0:
                data = amplify(data, self._gain)
            self._level.frame(data)
            frame = Frame(index, data, time.monotonic(), self.answering)
            index = self.newest = frame.end
            if self.cancelling and self.canceller is not None:
                # Over an answer: the microphone with the answer's echo taken out. The detector hears
                # that, so a person's wake word gets through; the session gets it too, so the server's
                # activity detection hears the person, not pivoice itself.
                frame = replace(frame, pcm=self.canceller.process(frame.end, frame.at, frame.pcm))
            if self.auto_gain is not None:
                frame = replace(frame, pcm=self.auto_gain(frame.pcm))
            hit = self.scorer(frame) if self.scoring and self.scorer is not None else None
            if self.suppress is not None:
                frame = replace(frame, pcm=self.suppress(frame.pcm))
            batch.append((frame, hit))
            if hit is not None or not self.idle or len(batch) >= IDLE_BATCH:
                if not self._put(loop, batch):
                    return
                batch = []
            self._rest(frame)

    def _rest(self, frame: Frame) -> None:
        """While idle, when the detector would not score the next period alone (with 40 ms periods: the first
        half of a chunk, and no word near), sleep until the period after it is in too, and read both: one
        wake-up per chunk, as with 80 ms periods (each wake-up of the capture thread costs CPU:
        bench/footprint.py), and no later a detection, which that second period decides. The frames keep
        their sample indices; only their read times come later (by up to a period). Not when the next period
        is already in (the thread is behind, or the device is not paced by a clock: ALSA's file plugin)."""
        if not (self.idle and self.scoring and not self.cancelling and self.patient is not None
                and self.patient(len(frame.pcm) // 2)):
            return
        try:
            ready = self._pcm.avail() if self._pcm is not None else self._period_frames
        except Exception:  # noqa: BLE001 - a failing device: the next read says so
            return
        if 0 <= ready < self._period_frames:  # what is in counts towards the next period: no drift
            self._awake.wait((2 * self._period_frames - ready) / self._rate + PATIENT_SLACK)

    @staticmethod
    def _notify(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any] | None, *args: Any) -> None:
        if fn is not None:
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop is closed: shutting down
                pass

    def _drop_pcm(self) -> None:
        if self._pcm is not None:
            try:
                self._pcm.close()
            except Exception:  # noqa: BLE001
                pass
        self._pcm = None

    def close(self) -> None:
        self._stop.set()
        self._awake.set()
        if self._thread is not None:
            # A read returns within a period on a real device; an idle test FIFO may never return.
            self._thread.join(timeout=0.5)
        if self._pcm is not None and (self._thread is None or not self._thread.is_alive()):
            self._pcm.close()
        self._pcm = None
