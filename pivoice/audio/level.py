"""The microphone's level over time, for the journal: a warning when it clips, or when it has been nearly
silent for long (muted in alsamixer, the wrong device or channel, a broken cable), each with the level.

Runs in the capture thread on every frame, which it only keeps: the peak and the sum of squares are taken
over BLOCK samples at once (0.32 s). A numpy call costs microseconds in a benchmark loop but tens of them
in a thread that wakes from sleep every period with cold caches: at 40 ms periods, measuring each frame
cost 0.5% of a core here, over a tenth of all listening (bench/footprint.py). Each warning is said once,
and again only after the level was fine in between.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..logs import fields

log = logging.getLogger("pivoice.audio")

CLIP = 32700  # a sample this close to full scale is clipped
CLIP_SAMPLES = 200  # clipped samples within CLIP_WINDOW that make a warning (a click or two does not)
CLIP_WINDOW = 60.0  # seconds
SILENT_DBFS = -70.0  # quieter than any room heard by a working microphone
SILENT_SECONDS = 600.0
BLOCK = 5120  # samples measured at a time


def dbfs(ms: float) -> float:
    """dBFS of a mean square."""
    return 10 * math.log10(max(ms, 1e-12) / 32768**2)


class LevelWatch:
    def __init__(self, device: str, rate: int = 16000):
        self.device, self.rate = device, rate
        self._clip_seen = 0.0  # audio seconds into the current clip window
        self._clipped = 0
        self._clip_peak = 0
        self._clip_said = False
        self._quiet_for = 0.0  # audio seconds, all below SILENT_DBFS
        self._quiet_ms = 0.0  # their mean square (for the message)
        self._quiet_said = False
        self._kept: list[bytes] = []
        self._kept_bytes = 0

    def frame(self, pcm: bytes) -> None:
        """One frame of int16 samples; measured with the next ones once BLOCK samples are in."""
        self._kept.append(pcm)
        self._kept_bytes += len(pcm)
        if self._kept_bytes >= 2 * BLOCK:
            block = b"".join(self._kept)
            self._kept.clear()
            self._kept_bytes = 0
            self._measure(block)

    def _measure(self, pcm: bytes) -> None:
        x = np.frombuffer(pcm, "<i2")
        if not x.size:
            return
        seconds = x.size / self.rate
        peak = int(np.max(np.abs(x.astype(np.int32))))
        ms = float(np.dot(x.astype(np.float64), x) / x.size)
        self._clip(x, peak, seconds)
        if dbfs(ms) < SILENT_DBFS:
            self._quiet_ms = (self._quiet_ms * self._quiet_for + ms * seconds) / (self._quiet_for + seconds)
            self._quiet_for += seconds
            if self._quiet_for >= SILENT_SECONDS and not self._quiet_said:
                self._quiet_said = True
                heard = f"{dbfs(self._quiet_ms):.0f} dBFS" if self._quiet_ms else "only zeros"
                log.warning("the microphone %s has been nearly silent for %.0f minutes (%s): is it muted "
                            "(alsamixer), or is audio.input_device or audio.input_channel the wrong one? "
                            "`pivoice test-mic` shows its level", self.device, self._quiet_for / 60, heard,
                            extra=fields(event="mic_silent"))
        else:
            if self._quiet_said:
                log.info("the microphone %s hears sound again", self.device, extra=fields(event="mic_level"))
            self._quiet_for, self._quiet_ms, self._quiet_said = 0.0, 0.0, False

    def _clip(self, x: np.ndarray, peak: int, seconds: float) -> None:
        if peak >= CLIP:
            self._clipped += int(np.count_nonzero(np.abs(x.astype(np.int32)) >= CLIP))
            self._clip_peak = max(self._clip_peak, peak)
        self._clip_seen += seconds
        if self._clipped >= CLIP_SAMPLES and not self._clip_said:
            self._clip_said = True
            log.warning("the microphone %s clips: %d samples at full scale in %.0f s (the loudest sound distorts, and "
                        "the wake word is heard less well). Turn its capture gain down (alsamixer) or "
                        "audio.input_gain_db lower; `pivoice test-mic` shows its level", self.device,
                        self._clipped, self._clip_seen, extra=fields(event="mic_clipping"))
        if self._clip_seen >= CLIP_WINDOW:
            if self._clipped == 0:
                self._clip_said = False  # a clean minute: say it again if it comes back
            self._clip_seen, self._clipped, self._clip_peak = 0.0, 0, 0
