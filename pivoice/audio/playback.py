"""Speaker playback: a thread doing blocking ALSA writes of 24 kHz mono audio, with an instant stop.

The device buffer is kept short (4 periods of 20 ms) and the thread writes one period at a time, so an
interruption waits for at most one period write before `drop()` throws away what the device still holds:
drop, not drain. Everything queued behind it is discarded too.
"""

from __future__ import annotations

import bisect
import logging
import queue
import threading
import time
from collections import deque
import alsaaudio

from .alsa import PcmParams, open_pcm
from ..logs import fields
from .convert import Converter

log = logging.getLogger("pivoice.audio")

RATE = 24000
PERIOD_FRAMES = 480  # 20 ms
PERIODS = 4


class Playback:
    def __init__(self, device: str, key: str = "audio.output_device", echo=None):
        """`echo`: told what is played and when it is heard (`played(pcm, heard_end)`), and when the
        device's buffer is thrown away (`dropped(now)`): the echo canceller's reference."""
        self.device = device
        self.key = key
        self.echo = echo
        self._pcm = None
        self._convert: Converter | None = None
        self._queue: queue.SimpleQueue[tuple[int, bytes] | None] = queue.SimpleQueue()  # None: wake up
        # The played stream's timeline, in 24 kHz samples since start: `queued` counts what play() was
        # given; each period written leaves a mark (end offset, when its last sample will be heard).
        self.queued = 0
        self._marks: deque[tuple[int, float]] = deque(maxlen=4096)
        self._flush = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()  # makes "queue empty -> idle" atomic against play()
        self._thread: threading.Thread | None = None
        self._buffer_frames = PERIOD_FRAMES * PERIODS
        self._device_rate = RATE

    def open(self) -> None:
        self._pcm = open_pcm("playback", self.device, PcmParams(RATE, 1, PERIOD_FRAMES, PERIODS), self.key)
        info = self._pcm.info()
        rate, channels = int(info["rate"]), int(info["channels"])
        self._buffer_frames = int(info["buffer_size"])
        self._device_rate = rate
        if (rate, channels) != (RATE, 1):
            log.info("playback device %s runs at %d Hz, %d channel(s): converting from 24 kHz mono",
                     self.device, rate, channels)
            self._convert = Converter(RATE, 1, rate, channels)
        log.info("playback open: %s, period %d frames, buffer %d frames",
                 self.device, info["period_size"], info["buffer_size"])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="playback", daemon=True)
        self._thread.start()

    # -- called from the event loop ---------------------------------------------------------------
    def play(self, pcm: bytes) -> int:
        """Queue 24 kHz mono s16le audio; returns at once, with the stream offset of its first sample."""
        with self._lock:
            offset = self.queued
            if pcm:
                self.queued += len(pcm) // 2
                self._queue.put((offset, pcm))
                self._idle.clear()
            return offset

    def heard_at(self, offset: int) -> float | None:
        """When the sample at stream `offset` comes out of the speaker (time.monotonic()), or None if it
        has not been written to the device (yet, or ever: dropped by a stop)."""
        with self._lock:
            marks = list(self._marks)
        i = bisect.bisect_left(marks, offset, key=lambda m: m[0])
        if i == len(marks) or marks[i][0] - offset >= PERIOD_FRAMES:
            return None  # not written yet, or dropped
        end, t = marks[i]
        return t - (end - offset) / RATE

    def stop(self) -> None:
        """Silence now: drop what is queued and what the device holds."""
        self._flush.set()
        self._drain_queue()
        self._queue.put(None)  # wake the thread if it sleeps

    @property
    def idle(self) -> bool:
        """Nothing queued and the device has played everything out (or was stopped)."""
        return self._idle.is_set()

    # -- the playback thread ----------------------------------------------------------------------
    def _drain_queue(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _run(self) -> None:
        """Plays until closed; a failing device is logged, closed and reopened (the conversation goes on,
        unheard until it is back)."""
        wait = 1.0
        while not self._stop.is_set():
            try:
                if self._pcm is None:
                    self.open()
                    log.info("the speaker %s is back", self.device)
                self._play()
                return
            except Exception as e:  # noqa: BLE001
                log.error("speaker %s failed: %s; reopening it in %.0f s (answers are not heard meanwhile)",
                          self.device, getattr(e, "message", None) or e, wait,
                          extra=fields(event="speaker_failed"))
                try:
                    self._pcm.close()
                except Exception:  # noqa: BLE001
                    pass
                self._pcm = None
                self._drain_queue()
                self._idle.set()
                self._stop.wait(wait)
                wait = min(wait * 2, 30.0)

    def _play(self) -> None:
        while not self._stop.is_set():
            if self._flush.is_set():
                self._flush.clear()
                self._drain_queue()
                self._pcm.drop()
                if self.echo is not None:
                    self.echo.dropped(time.monotonic())
                self._idle.set()
                continue
            try:
                # Idle: sleep until there is something to do (play, stop and close wake it);
                # playing: look every 10 ms for the device to have played out.
                item = self._queue.get(timeout=None if self._idle.is_set() else 0.01)
            except queue.Empty:
                if not self._idle.is_set() and self._played_out():
                    with self._lock:
                        if self._queue.empty():
                            self._idle.set()
                continue
            if item is None:
                continue  # a wake-up
            offset, chunk = item
            # A period at a time, so a stop waits for at most one period's write.
            step = PERIOD_FRAMES * 2
            for start in range(0, len(chunk), step):
                if self._flush.is_set() or self._stop.is_set():
                    break
                piece = chunk[start : start + step]
                self._write(self._convert(piece) if self._convert else piece)
                heard = self._mark(offset + (start + len(piece)) // 2)
                if self.echo is not None:
                    self.echo.played(piece, heard)

    def _write(self, data: bytes) -> None:
        self._pcm.write(data)

    def _mark(self, end_offset: int) -> float:
        """Note when the sample before `end_offset`, just written, will be heard; returns that moment."""
        try:
            pending = max(0, self._buffer_frames - self._pcm.avail()) / self._device_rate
        except Exception:  # noqa: BLE001
            pending = self._buffer_frames / self._device_rate
        heard = time.monotonic() + pending
        with self._lock:
            self._marks.append((end_offset, heard))
        return heard

    def _played_out(self) -> bool:
        try:
            return self._pcm.avail() >= self._buffer_frames or self._pcm.state() != alsaaudio.PCM_STATE_RUNNING
        except Exception:  # noqa: BLE001 - a device that cannot say is treated as done
            return True

    def close(self) -> None:
        self._stop.set()
        self._flush.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._pcm is not None:
            try:
                self._pcm.drop()
            except Exception:  # noqa: BLE001
                pass
            self._pcm.close()
            self._pcm = None
