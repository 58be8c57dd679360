"""Microphone capture: a thread reading ALSA (poll, then a non-blocking read), handing 16 kHz mono frames
to the event loop. A device that fails or goes silent for STALL_SECONDS (unplugged, hung) is closed and
reopened with a backoff; the assistant is told when it goes and when it is back.

The thread also runs the wake-word detector on each frame while the assistant wants it (`scoring`), so a
frame costs one hand-over to the event loop, with its detection (bench/wake_cost.py --explain measured
the hand-overs). The hand-over is bounded (SLOTS frames) and the thread waits when it is full: audio is
never dropped between the device and the consumer. On a real device the consumer keeps up; on an
unpaced test device (ALSA's file plugin) the wait paces capture to the consumer.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import select
import threading
import time

from .alsa import PcmParams, open_pcm
from .convert import Converter
from .ring import Frame

log = logging.getLogger("pivoice.audio")

RATE = 16000
PERIOD_FRAMES = 1280  # 80 ms: one wake-word step, one Live API message
PERIODS = 4


STALL_SECONDS = 3.0  # no audio for this long from a device that should deliver every 80 ms: it is gone
SLOTS = 32  # frames (2.5 s) handed over and not yet taken, before the thread waits
RETRY_FIRST = 1.0  # seconds before reopening a failed device; doubles up to RETRY_MAX
RETRY_MAX = 10.0


class Capture:
    def __init__(self, device: str, key: str = "audio.input_device", on_lost=None, on_back=None, scorer=None):
        """`on_lost(message)` / `on_back()`: called on the event loop when the device fails while running
        (unplugged, an error alsa-lib cannot recover) and when it works again."""
        self.device = device
        self.key = key
        self.on_lost = on_lost
        self.on_back = on_back
        self.scorer = scorer  # frame -> detection or None, run in this thread while `scoring`
        self.cleaner = None  # frame -> frame (the echo canceller), run in this thread before the scorer
        self.scoring = False
        self._pcm = None
        self._poll = None
        self._convert: Converter | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.queue: asyncio.Queue[tuple[Frame, object]] = asyncio.Queue()  # (frame, detection or None)
        self._slots = threading.BoundedSemaphore(SLOTS)

    def open(self) -> None:
        """Open the device (raises ConfigError/DeviceError with a message naming the key)."""
        self._pcm = open_pcm("capture", self.device, PcmParams(RATE, 1, PERIOD_FRAMES, PERIODS), self.key,
                             nonblock=True)
        self._poll = select.poll()
        for fd, mask in self._pcm.polldescriptors():
            self._poll.register(fd, mask)
        info = self._pcm.info()
        rate, channels = int(info["rate"]), int(info["channels"])
        if (rate, channels) != (RATE, 1):
            log.info("capture device %s runs at %d Hz, %d channel(s): converting to 16 kHz mono",
                     self.device, rate, channels)
            self._convert = Converter(rate, channels, RATE, 1)
        log.info("capture open: %s, period %d frames, buffer %d frames",
                 self.device, info["period_size"], info["buffer_size"])

    def start(self, loop: asyncio.AbstractEventLoop, lost: bool = False) -> None:
        """Read in a thread from now on. `lost`: the device could not be opened yet (absent or busy at
        start); the thread keeps trying and calls `on_back` once it delivers audio."""
        self._thread = threading.Thread(target=self._run, args=(loop, lost), name="capture", daemon=True)
        self._thread.start()

    def _put(self, loop: asyncio.AbstractEventLoop, item: tuple[Frame, object]) -> bool:
        """Hand an item to the event loop, waiting while SLOTS are taken. False when stopping."""
        while not self._slots.acquire(timeout=0.2):
            if self._stop.is_set():
                return False
        try:
            loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is gone
            return False
        return True

    def taken(self) -> None:
        """The consumer took an item off `queue` (frees its slot)."""
        self._slots.release()

    def _run(self, loop: asyncio.AbstractEventLoop, lost: bool) -> None:
        index = 0
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
            frame = Frame(index, data, time.monotonic())
            index = frame.end
            if self.cleaner is not None:
                frame = self.cleaner(frame)
            hit = self.scorer(frame) if self.scoring and self.scorer is not None else None
            if not self._put(loop, (frame, hit)):
                return

    @staticmethod
    def _notify(loop: asyncio.AbstractEventLoop, fn, *args) -> None:
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
        if self._thread is not None:
            # A read returns within a period on a real device; an idle test FIFO may never return.
            self._thread.join(timeout=0.5)
        if self._pcm is not None and (self._thread is None or not self._thread.is_alive()):
            self._pcm.close()
        self._pcm = None
