"""Sample-rate and channel conversion between what pivoice speaks and what a device gives.

pivoice works in 16 kHz mono s16le towards the Live API and 24 kHz mono s16le from it. ALSA devices are
opened at exactly those; a hardware device that cannot do them ('hw:' names, some USB cards) reports
what it took instead, and a Converter bridges the difference with soxr (streaming, so chunk edges
leave no clicks). When the device takes the asked-for format the Converter is not used at all.
"""

from __future__ import annotations

import numpy as np
import soxr


class Converter:
    """Streaming s16le conversion: `in_rate`/`in_channels` -> `out_rate`/`out_channels`."""

    def __init__(self, in_rate: int, in_channels: int, out_rate: int, out_channels: int):
        self.in_rate, self.in_channels = in_rate, in_channels
        self.out_rate, self.out_channels = out_rate, out_channels
        self._resampler = (
            soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16") if in_rate != out_rate else None
        )

    def __call__(self, pcm: bytes) -> bytes:
        x = np.frombuffer(pcm, dtype="<i2")
        if self.in_channels > 1:
            # Mix down: the mean keeps the level of a mono source recorded on every channel.
            x = x[: x.size - x.size % self.in_channels].reshape(-1, self.in_channels)
            x = x.mean(axis=1).round().astype("<i2")
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        if self.out_channels > 1:
            x = np.repeat(x, self.out_channels)
        return x.astype("<i2", copy=False).tobytes()
