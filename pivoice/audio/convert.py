"""Sample-rate and channel conversion between what pivoice speaks and what a device gives.

pivoice works in 16 kHz mono s16le towards the Live API and 24 kHz mono s16le from it. ALSA devices are
asked for exactly those (or what the config names); a hardware device that cannot do them ('hw:' names,
HATs, some USB cards) runs at what it can (device.py), and a Converter bridges the difference: sample
format, channels, and rate with soxr (streaming, so chunk edges leave no clicks). When the device takes
pivoice's own format the Converter is not used at all.

AnswerAudio checks the model's audio where it comes in: whole samples, 24 kHz, or made so.
"""

from __future__ import annotations

import logging

import numpy as np
import soxr

from ..logs import fields
from .format import OUT_RATE, SAMPLE_DTYPE

log = logging.getLogger("pivoice.audio")


def decode(data: bytes, sample_format: str) -> np.ndarray:
    """A device's samples (device.SAMPLE_FORMATS) -> int16, interleaved as they came; a partial last
    sample is left out."""
    if sample_format == "S16_LE":
        return np.frombuffer(data[: len(data) // 2 * 2], SAMPLE_DTYPE)
    if sample_format == "S24_3LE":  # 3 bytes a sample: its upper two are the 16-bit sample
        b = np.frombuffer(data[: len(data) // 3 * 3], np.uint8).reshape(-1, 3)
        return np.ascontiguousarray(b[:, 1:]).view(SAMPLE_DTYPE).reshape(-1)
    if sample_format not in ("S32_LE", "S24_LE"):
        raise ValueError(f"sample format {sample_format} is not one pivoice converts")
    x = np.frombuffer(data[: len(data) // 4 * 4], "<i4")
    if sample_format == "S24_LE":  # 24 bits in the low three bytes of four
        x = x << 8
    return (x >> 16).astype(SAMPLE_DTYPE)


def encode(x: np.ndarray, sample_format: str) -> bytes:
    """int16 samples -> a device's format."""
    x = x.astype(SAMPLE_DTYPE, copy=False)
    if sample_format == "S16_LE":
        return x.tobytes()
    if sample_format == "S24_3LE":
        b = np.zeros((x.size, 3), np.uint8)
        b[:, 1:] = x.view(np.uint8).reshape(-1, 2)
        return b.tobytes()
    if sample_format not in ("S32_LE", "S24_LE"):
        raise ValueError(f"sample format {sample_format} is not one pivoice converts")
    return (x.astype("<i4") << (16 if sample_format == "S32_LE" else 8)).tobytes()


def amplify(pcm: bytes, factor: float) -> bytes:
    """s16le samples times `factor` (audio.input_gain_db), clipped to what 16 bits hold."""
    return np.clip(np.frombuffer(pcm, SAMPLE_DTYPE) * factor, -32768, 32767).astype(SAMPLE_DTYPE).tobytes()


class Converter:
    """Streaming conversion between a device's format and pivoice's (16-bit, mono, its rate), either way:
    `in_*` what comes in, `out_*` what goes out. `pick`: of several channels coming in, use this one
    (0 = the first) instead of their mix."""

    def __init__(self, in_rate: int, in_channels: int, out_rate: int, out_channels: int,
                 in_format: str = "S16_LE", out_format: str = "S16_LE", pick: int | None = None):
        self.in_rate, self.in_channels, self.in_format = in_rate, in_channels, in_format
        self.out_rate, self.out_channels, self.out_format = out_rate, out_channels, out_format
        self.pick = pick
        self._resampler = (
            soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16") if in_rate != out_rate else None
        )

    def __call__(self, pcm: bytes) -> bytes:
        x = decode(pcm, self.in_format)
        if self.in_channels > 1:
            x = x[: x.size - x.size % self.in_channels].reshape(-1, self.in_channels)
            # One channel, or the mean of all (it keeps the level of a source recorded on every channel).
            x = x[:, self.pick] if self.pick is not None else x.mean(axis=1).round().astype(SAMPLE_DTYPE)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(np.ascontiguousarray(x))
        return self._out(x)

    def flush(self) -> bytes:
        """The end of the stream: what the resampler still holds. Use a new Converter after this."""
        if self._resampler is None:
            return b""
        return self._out(self._resampler.resample_chunk(np.zeros(0, SAMPLE_DTYPE), last=True))

    def _out(self, x: np.ndarray) -> bytes:
        if self.out_channels > 1:
            x = np.repeat(x, self.out_channels)
        return encode(np.asarray(x), self.out_format)


RATES = range(8000, 96001)  # PCM rates accepted from the API (resampled to OUT_RATE)


def _roughness(pcm: bytes) -> float:
    """Mean step between neighbouring samples: small for speech and tones read on the right byte,
    near-random (thousands) for a stream read one byte off."""
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], SAMPLE_DTYPE).astype(np.int32)
    return float(np.mean(np.abs(np.diff(x)))) if x.size > 1 else 0.0


class AnswerAudio:
    """The model's audio messages of one conversation -> 24 kHz mono s16le in whole samples.

    - Format: each message's inlineData names it in mimeType ("audio/pcm;rate=24000"; no rate, or no
      mimeType: 24 kHz). PCM at another rate is resampled to 24 kHz, a stream per turn; what cannot be
      played as it is (another encoding, more than one channel, a rate that makes no sense) is dropped.
    - Odd lengths: a turn's audio is one byte stream, so a sample split between two messages is joined
      again: the odd byte waits for the next message. A message with a byte too many or too few would,
      joined that way, shift every later sample by a byte (loud noise instead of speech), so the next
      message is read both ways, joined to the waiting byte and on its own, and the smoother reading is
      kept (speech changes little from one sample to the next; a stream one byte off jumps wildly). A byte
      still waiting when the turn ends is dropped.
    - Each kind of trouble is logged once per conversation (the object lives as long as one), not per
      message.
    """

    def __init__(self):
        self._carry = b""  # the odd byte waiting for the next message of the turn
        self._rate = OUT_RATE
        self._convert: Converter | None = None
        self._told: set[str] = set()

    def take(self, data: bytes, mime_type: str | None) -> bytes:
        """One message's audio -> what to play (may be empty)."""
        rate = self._rate_of(mime_type)
        if rate is None:
            return b""
        out = b""
        if rate != self._rate:
            out, self._rate = self._flush(), rate
        pcm = self._align(data)
        if self._rate != OUT_RATE:
            if self._convert is None:
                self._convert = Converter(self._rate, 1, OUT_RATE, 1)
            pcm = self._convert(pcm)
        return out + pcm

    def end_turn(self) -> bytes:
        """The turn is over (complete, interrupted, or cut by a new connection): the resampler's tail,
        to play if the turn completed. A byte still waiting is dropped."""
        self._carry = b""
        return self._flush()

    def _flush(self) -> bytes:
        convert, self._convert = self._convert, None
        return convert.flush() if convert is not None else b""

    def _align(self, data: bytes) -> bytes:
        if self._carry:
            joined = self._carry + data
            even = len(joined) // 2 * 2
            data = data if _roughness(joined[:even]) > _roughness(data) else joined
            self._carry = b""
        if len(data) % 2:
            self._tell("odd", logging.WARNING,
                       f"the Live API sent audio of odd length ({len(data)} bytes, not whole 16-bit samples): "
                       f"samples split between messages are joined, stray bytes dropped (said once per "
                       f"conversation)")
            data, self._carry = data[:-1], data[-1:]
        return data

    def _rate_of(self, mime_type: str | None) -> int | None:
        """The sample rate that `mime_type` says, or None (and a warning, once) if it cannot be played."""
        kind, *params = [p.strip().lower() for p in (mime_type or "audio/pcm").split(";")]
        values = dict(p.partition("=")[::2] for p in params)
        rate = values.get("rate", str(OUT_RATE))
        if kind != "audio/pcm" or values.get("channels", "1") != "1" or not rate.isdigit() \
                or int(rate) not in RATES:
            self._tell(f"refused {mime_type}", logging.WARNING,
                       f"the Live API sent audio as {mime_type!r}, which pivoice cannot play (it plays "
                       f"audio/pcm, one channel, {RATES.start}-{RATES.stop - 1} Hz): dropped (said once per "
                       f"conversation)")
            return None
        if int(rate) != OUT_RATE:
            self._tell(f"rate {rate}", logging.INFO,
                       f"the Live API sends audio at {int(rate)} Hz: resampled to {OUT_RATE // 1000} kHz")
        return int(rate)

    def _tell(self, what: str, level: int, message: str) -> None:
        if what not in self._told:
            self._told.add(what)
            log.log(level, message, extra=fields(event="model_audio_format"))
