"""Microphone capture: a thread doing blocking ALSA reads, handing 16 kHz mono frames to the event loop.

The hand-over queue is bounded and the thread waits when it is full: audio is never dropped between the
device and the consumer. On a real device the consumer keeps up and the queue stays near empty; on an
unpaced test device (ALSA's file plugin) the wait paces capture to the consumer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time

from .alsa import PcmParams, open_pcm
from .convert import Converter
from .ring import Frame

log = logging.getLogger("pivoice.audio")

RATE = 16000
PERIOD_FRAMES = 1280  # 80 ms: one wake-word step, one Live API message
PERIODS = 4


class CaptureError(Exception):
    """The capture device failed while running (unplugged, or an error alsa-lib cannot recover)."""


class Capture:
    def __init__(self, device: str, key: str = "audio.input_device"):
        self.device = device
        self.key = key
        self._pcm = None
        self._convert: Converter | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.queue: asyncio.Queue[Frame | Exception] = asyncio.Queue(maxsize=32)

    def open(self) -> None:
        """Open the device (raises ConfigError/DeviceError with a message naming the key)."""
        self._pcm = open_pcm("capture", self.device, PcmParams(RATE, 1, PERIOD_FRAMES, PERIODS), self.key)
        info = self._pcm.info()
        rate, channels = int(info["rate"]), int(info["channels"])
        if (rate, channels) != (RATE, 1):
            log.info("capture device %s runs at %d Hz, %d channel(s): converting to 16 kHz mono",
                     self.device, rate, channels)
            self._convert = Converter(rate, channels, RATE, 1)
        log.info("capture open: %s, period %d frames, buffer %d frames",
                 self.device, info["period_size"], info["buffer_size"])

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._thread = threading.Thread(target=self._run, args=(loop,), name="capture", daemon=True)
        self._thread.start()

    def _put(self, loop: asyncio.AbstractEventLoop, item: Frame | Exception) -> bool:
        """Hand an item to the event loop, waiting while the queue is full. False when stopping."""
        fut = asyncio.run_coroutine_threadsafe(self.queue.put(item), loop)
        while not self._stop.is_set():
            try:
                fut.result(timeout=0.2)
                return True
            except concurrent.futures.TimeoutError:
                continue
            except (RuntimeError, concurrent.futures.CancelledError):  # the loop is gone
                return False
        fut.cancel()
        return False

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                n, data = self._pcm.read()
                if n < 0:
                    log.warning("capture overrun on %s (the system was too busy): a little audio was lost",
                            self.device)
                    continue
                if not data:
                    continue
                if self._convert is not None:
                    data = self._convert(data)
                frame = Frame(index, data, time.monotonic())
                index = frame.end
                if not self._put(loop, frame):
                    return
        except Exception as e:  # noqa: BLE001 - handed to the consumer, which decides
            if not self._stop.is_set():
                self._put(loop, CaptureError(f"capture device {self.device} failed: {e}"))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # A read returns within a period on a real device; an idle test FIFO may never return.
            self._thread.join(timeout=0.5)
        if self._pcm is not None and (self._thread is None or not self._thread.is_alive()):
            self._pcm.close()
        self._pcm = None
