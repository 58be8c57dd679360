"""Speaker playback: a thread writing 24 kHz mono audio to ALSA, with an instant stop, that notices a
speaker which stops taking audio.

The device buffer is kept short (4 periods of 20 ms) and the thread writes one period at a time. The PCM
is opened non-blocking: when the device has no room the thread waits on its poll descriptors for at most
POLL_MS, so it always comes back to look at a stop, a flush or closing. An interruption drops what the
device still holds (drop, not drain); everything queued behind it is discarded too.

Failures: an ALSA error, or a device that takes nothing and plays nothing out for HANG_SECONDS while
audio waits (a hung card, a suspended sink), ends the answer being played. It is logged in one line,
the device is closed and reopened after a wait (1 s, doubling up to RETRY_MAX, back to 1 s once audio
plays again), and meanwhile what `play()` gets is dropped, so the assistant sees the speaker idle and
the conversation goes on, unheard until the device is back.

Only the playback thread uses the PCM once it runs, and only it closes it; `close()` closes it itself
only when that thread has provably ended (or never started).
"""

from __future__ import annotations

import bisect
import logging
import queue
import select
import threading
import time
from collections import deque
from typing import Any

import alsaaudio
import numpy as np

from ..logs import fields
from ..threadname import name_this_thread
from .convert import Converter, encode
from .device import Opener, Want
from .format import OUT_RATE

log = logging.getLogger("pivoice.audio")

RATE = OUT_RATE
WANT = Want(RATE, 1, 20.0, 4)  # a short buffer: 4 periods of 20 ms
POLL_MS = 20  # the longest the thread waits on the device before looking at stop / flush again
HANG_SECONDS = 5.0  # audio waiting and the device taking or playing none of it for this long: hung
RETRY_FIRST = 1.0  # seconds before reopening a failed device; doubles up to RETRY_MAX
RETRY_MAX = 30.0
CLOSE_WAIT = 3.0  # how long close() waits for the thread (it comes back within POLL_MS)


class SpeakerHung(Exception):
    pass


class Playback:
    def __init__(self, device: str, key: str = "audio.output_device", echo=None, want: Want = WANT):
        """`echo`: told what is played and when it is heard (`played(pcm, heard_end)`), and when the
        device's buffer is thrown away (`dropped(now)`): the echo canceller's reference. `want`: the format
        to ask the device for."""
        self.device = device
        self.key = key
        self._opener = Opener("playback", device, key, want)
        self._step = round(want.period_ms * RATE / 1000)  # 24 kHz samples written at a time: one period
        self.echo = echo
        self._pcm: Any = None  # alsaaudio.PCM while open (used by the playback thread only)
        self._poll: Any = None  # select.poll of its descriptors
        self._convert: Converter | None = None
        # (stop's number, stream offset, audio); None: wake up. An item queued before the last stop() is stale.
        self._queue: queue.SimpleQueue[tuple[int, int, bytes] | None] = queue.SimpleQueue()
        self._stops = 0
        # The played stream's timeline, in 24 kHz samples since start: `queued` counts what play() was
        # given; each period written leaves a mark (end offset, when its last sample will be heard).
        self.queued = 0
        self.gain = 1.0  # software volume, 0..1 (audio/volume.py sets it when there is no mixer control)
        self._marks: deque[tuple[int, float]] = deque(maxlen=4096)
        self._flush = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()  # makes "queue empty -> idle" atomic against play()
        self._down = False  # failed and not reopened yet: play() drops what it gets
        self._thread: threading.Thread | None = None
        self._buffer_frames = self._step * want.periods
        self._device_rate = RATE
        self._frame_bytes = 2
        self._progress = 0.0  # when the device last took audio or played some out
        self._avail = 0  # the device's free space when last looked at
        self._taken = 0  # frames the device took since it was (re)opened
        self._played = False  # audio has played out since the device was (re)opened (not just filled it)

    def open(self) -> None:
        pcm, got = self._opener.open()
        poll = select.poll()
        for fd, mask in pcm.polldescriptors():
            poll.register(fd, mask)
        self._buffer_frames = got.buffer_frames
        self._device_rate = got.rate
        self._frame_bytes = len(encode(np.zeros(got.channels, np.int16), got.sample_format))
        self._convert = None
        if (got.rate, got.channels, got.sample_format) != (RATE, 1, "S16_LE"):
            # Mono to every channel of the device.
            self._convert = Converter(RATE, 1, got.rate, got.channels, out_format=got.sample_format)
        self._pcm, self._poll = pcm, poll

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="playback", daemon=True)
        self._thread.start()

    # -- called from the event loop ---------------------------------------------------------------
    def play(self, pcm: bytes) -> int:
        """Queue 24 kHz mono s16le audio (whole samples: a stray last byte is left out); returns at once,
        with the stream offset of its first sample. While the device is down the audio is dropped."""
        pcm = pcm[: len(pcm) - len(pcm) % 2]
        if self.gain != 1.0 and pcm:  # software volume (audio.volume_control = ""): what the speaker gets
            pcm = (np.frombuffer(pcm, "<i2") * self.gain).astype("<i2").tobytes()
        with self._lock:
            offset = self.queued
            if pcm:
                self.queued += len(pcm) // 2
                if not self._down:
                    self._queue.put((self._stops, offset, pcm))
                    self._idle.clear()
            return offset

    def heard_at(self, offset: int) -> float | None:
        """When the sample at stream `offset` comes out of the speaker (time.monotonic()), or None if it
        has not been written to the device (yet, or ever: dropped by a stop)."""
        with self._lock:
            marks = list(self._marks)
        i = bisect.bisect_left(marks, offset, key=lambda m: m[0])
        if i == len(marks) or marks[i][0] - offset >= self._step:
            return None  # not written yet, or dropped
        end, t = marks[i]
        return t - (end - offset) / RATE

    def stop(self) -> None:
        """Silence now: drop what is queued and what the device holds."""
        with self._lock:
            self._stops += 1  # what play() was given until now is not played (what it gets next is)
            self._flush.set()
            self._drain_queue()
        self._queue.put(None)  # wake the thread if it sleeps

    @property
    def idle(self) -> bool:
        """Nothing queued and the device has played everything out (or was stopped, or failed)."""
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
        unheard until it is back). The PCM is closed here, by the one thread that uses it."""
        name_this_thread()
        wait = RETRY_FIRST
        try:
            while not self._stop.is_set():
                try:
                    if self._pcm is None:
                        self.open()
                        with self._lock:
                            self._down = False
                        log.info("speaker %s reopened", self.device, extra=fields(event="speaker_back"))
                    self._taken, self._played = 0, False
                    self._play()
                    return
                except Exception as e:  # noqa: BLE001 - unplugged, I/O error, hung: reopen with backoff
                    if self._played:  # it worked since the last failure: start the backoff afresh
                        wait, self._played = RETRY_FIRST, False
                    self._failed(e, wait)
                    self._stop.wait(wait)
                    wait = min(wait * 2, RETRY_MAX)
        finally:
            self._close_pcm()

    def _failed(self, e: Exception, wait: float) -> None:
        if self._down:  # reopening failed (the message names the setting)
            log.warning("speaker still unavailable: %s; trying again in %.0f s",
                        str(getattr(e, "message", None) or e).rstrip("."), wait, extra=fields(event="speaker_failed"))
        else:
            what = (f"it took no audio for {HANG_SECONDS:g} s (hung or suspended?); the answer is dropped"
                    if isinstance(e, SpeakerHung) else getattr(e, "message", None) or str(e))
            log.error("speaker %s (%s) failed: %s; reopening it in %.0f s (answers are not heard meanwhile)",
                      self.device, self.key, what, wait, extra=fields(event="speaker_failed"))
        self._close_pcm()
        if self.echo is not None:
            self.echo.dropped(time.monotonic())  # what the device held is never heard
        with self._lock:
            self._down = True
            self._drain_queue()
            self._idle.set()

    def _close_pcm(self) -> None:
        pcm, self._pcm, self._poll = self._pcm, None, None
        if pcm is not None:
            try:
                pcm.drop()
            except Exception:  # noqa: BLE001
                pass
            try:
                pcm.close()
            except Exception:  # noqa: BLE001
                pass

    def _play(self) -> None:
        while not self._stop.is_set():
            if self._flush.is_set():
                self._flush.clear()
                self._pcm.drop()
                if self.echo is not None:
                    self.echo.dropped(time.monotonic())
                with self._lock:  # (audio queued after the stop, e.g. an earcon, is kept and played)
                    if self._queue.empty():
                        self._idle.set()
                continue
            try:
                # Idle: sleep until there is something to do (play, stop and close wake it);
                # playing: look every 10 ms for the device to have played out.
                item = self._queue.get(timeout=None if self._idle.is_set() else 0.01)
            except queue.Empty:
                if not self._idle.is_set():
                    self._check_played_out()
                continue
            if item is None or item[0] != self._stops:
                continue  # a wake-up, or audio a stop() came after
            self._progress = time.monotonic()  # the last item was written whole: the device is moving
            _, offset, chunk = item
            # A period at a time, so that a stop is not held up by a long write.
            step = self._step * 2
            for start in range(0, len(chunk), step):
                piece = chunk[start : start + step]
                if not self._write(self._convert(piece) if self._convert else piece):
                    break  # stop or flush
                heard = self._mark(offset + (start + len(piece)) // 2)
                if self.echo is not None:
                    self.echo.played(piece, heard)

    def _write(self, data: bytes) -> bool:
        """Write all of `data`, waiting for room; False when a stop or flush came first. Raises
        SpeakerHung when the device takes nothing for HANG_SECONDS."""
        view = memoryview(data)
        said_ready = False
        while view:
            if self._flush.is_set() or self._stop.is_set():
                return False
            n = self._pcm.write(view)
            if n > 0:
                view = view[n * self._frame_bytes :]
                self._progress = time.monotonic()
                self._taken += n
                self._played = self._played or self._taken > self._buffer_frames  # more than it holds
                continue
            if time.monotonic() - self._progress > HANG_SECONDS:
                raise SpeakerHung()
            if n < 0:
                # An underrun (after an answer has played out; or the system was busy): alsaaudio has
                # made the device ready again, and nothing of this write was taken: write it again.
                log.debug("speaker underrun: written too late, the device starts again")
                continue
            if said_ready:
                time.sleep(0.002)  # the descriptor said "room" and the device took nothing: do not spin
            said_ready = bool(self._poll.poll(POLL_MS))
        return True

    def _mark(self, end_offset: int) -> float:
        """Note when the sample before `end_offset`, just written, will be heard; returns that moment."""
        try:
            self._avail = self._pcm.avail()
            pending = max(0, self._buffer_frames - self._avail) / self._device_rate
        except Exception:  # noqa: BLE001
            pending = self._buffer_frames / self._device_rate
        heard = time.monotonic() + pending
        with self._lock:
            self._marks.append((end_offset, heard))
        return heard

    def _check_played_out(self) -> None:
        """All written: idle once the device has played it out. A device that plays nothing out for
        HANG_SECONDS is hung."""
        try:
            avail = self._pcm.avail()
            done = avail >= self._buffer_frames or self._pcm.state() != alsaaudio.PCM_STATE_RUNNING
        except Exception:  # noqa: BLE001 - a device that cannot say is treated as done
            avail, done = self._buffer_frames, True
        if avail > self._avail:
            self._progress = time.monotonic()
            self._played = True
        self._avail = avail
        if done:
            with self._lock:
                if self._queue.empty():
                    self._idle.set()
        elif time.monotonic() - self._progress > HANG_SECONDS:
            raise SpeakerHung()

    def close(self) -> None:
        self._stop.set()
        self._flush.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(CLOSE_WAIT)  # it closes the PCM on its way out
            if self._thread.is_alive():
                # Never close a PCM under a thread that may be inside a call on it: the process exits
                # without it (the thread is a daemon thread).
                log.warning("the playback thread did not stop: leaving %s to the system", self.device)
                return
        self._close_pcm()  # never started, or finished: nobody else uses it
