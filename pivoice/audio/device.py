"""Opening a sound device in a format it takes, and saying what was agreed.

pivoice asks a device for what it works in (16 kHz mono to listen, 24 kHz mono to speak, 16-bit) or for
what the config names. A device may take that, may hand back something else (a 'hw:' card that only runs
at 48 kHz gives 48 kHz; a stereo-only microphone gives two channels; one that only does 32-bit samples
gives those), or may refuse outright. Then pivoice tries the rates and channel counts of FALLBACK_RATES x
1..MAX_CHANNELS, and takes the first the device opens with. What was agreed is a Format, from which the
caller builds a Converter (convert.py); it is logged once per device (again only when it changes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .alsa import FormatRefused, PcmParams, open_pcm
from .cards import PROC, resolve
from .format import IN_RATE, OUT_RATE

log = logging.getLogger("pivoice.audio")

FALLBACK_RATES = (48000, 44100, 32000, 22050, 16000)  # Hz, tried in this order after the wanted rate
MAX_CHANNELS = 8
# Sample formats pivoice reads and writes itself (convert.py); ALSA names them so in info()["format_name"].
SAMPLE_FORMATS = ("S16_LE", "S32_LE", "S24_LE", "S24_3LE")


@dataclass(frozen=True)
class Want:
    """What to ask a device for: `rate`/`channels` wanted; `period_ms` x `periods` its buffer."""

    rate: int
    channels: int
    period_ms: float
    periods: int

    def params(self, rate: int, channels: int) -> PcmParams:
        return PcmParams(rate, channels, max(16, round(self.period_ms * rate / 1000)), self.periods)


@dataclass(frozen=True)
class Format:
    """What a device runs at, as it reported it once open."""

    rate: int
    channels: int
    sample_format: str
    period_frames: int
    buffer_frames: int

    def describe(self) -> str:
        return (f"{self.rate} Hz, {self.channels} channel{'s' if self.channels > 1 else ''}, {self.sample_format}, "
                f"period {self.period_frames} frames ({self.period_frames * 1000 / self.rate:.0f} ms), buffer "
                f"{self.buffer_frames} frames ({self.buffer_frames * 1000 / self.rate:.0f} ms)")


def wants(audio: Any) -> tuple[Want, Want, int | None]:
    """From the [audio] settings: what to ask the capture device for, what the playback device, and which
    capture channel to listen to (None: the mix of all)."""
    channel = audio.input_channel if isinstance(audio.input_channel, int) else None
    channels = max(audio.input_channels or 1, (channel or 0) + 1)  # the chosen channel must be there
    capture = Want(audio.input_rate or IN_RATE, channels, audio.input_period_ms, audio.input_periods)
    playback = Want(audio.output_rate or OUT_RATE, audio.output_channels or 1, audio.output_period_ms,
                    audio.output_periods)
    return capture, playback, channel


def attempts(want: Want) -> list[tuple[int, int]]:
    """The (rate, channels) pairs to try, in order: what is wanted, then the fallbacks (more channels than
    wanted before fewer, the wanted rate before others)."""
    rates = dict.fromkeys((want.rate, *FALLBACK_RATES))
    channels = sorted(range(1, MAX_CHANNELS + 1), key=lambda c: (c < want.channels, abs(c - want.channels)))
    return [(r, c) for r in rates for c in channels]


def format_of(info: dict[str, Any]) -> Format:
    return Format(int(info["rate"]), int(info["channels"]), str(info["format_name"]),
                  int(info["period_size"]), int(info["buffer_size"]))


def decide(kind: str, device: str, key: str, want: Want, got: Format) -> Format | None:
    """Whether the format a device reported can be used: the format itself; None when the device should be
    opened again at the rate it reported (its period was sized for another rate); a ConfigError when its
    samples are in a format pivoice cannot convert."""
    if got.sample_format not in SAMPLE_FORMATS:
        raise ConfigError(
            f"{key}: the ALSA {kind} device '{device}' only takes {got.sample_format} samples, which pivoice "
            f"cannot convert (it converts {', '.join(SAMPLE_FORMATS)}). Use its 'plughw:' name, which has ALSA "
            f"convert them."
        )
    wanted_period = want.params(got.rate, got.channels).period_frames
    if abs(got.period_frames - wanted_period) > wanted_period // 2:
        return None
    return got


class Opener:
    """Opens one device again and again (at start, after an unplug) and logs what was agreed once."""

    def __init__(self, kind: str, device: str, key: str, want: Want):
        self.kind, self.device, self.key, self.want = kind, device, key, want
        self.proc = PROC  # where the kernel lists the sound cards
        self._told: Format | None = None

    def open(self) -> tuple[Any, Format]:
        pcm, got = self._negotiate()
        if got != self._told:
            level = logging.INFO if self._told is None else logging.WARNING
            changed = "" if self._told is None else " (it ran otherwise before)"
            asked = f"{self.want.rate} Hz, {self.want.channels} channel{'s' if self.want.channels > 1 else ''}"
            log.log(level, "%s device %s: %s (asked for %s)%s", self.kind, self.device, got.describe(), asked, changed)
            self._told = got
        return pcm, got

    def _negotiate(self) -> tuple[Any, Format]:
        tried: list[str] = []
        name = resolve(self.device, self.key, self.proc)  # (usb:VVVV:PPPP: wherever that card is now)
        for rate, channels in attempts(self.want):
            try:
                pcm = open_pcm(self.kind, name, self.want.params(rate, channels), self.key, nonblock=True)
            except FormatRefused:  # not this format (absent, busy, unknown: raised at once)
                tried.append(f"{rate}/{channels}")
                continue
            got = format_of(pcm.info())
            use = decide(self.kind, self.device, self.key, self.want, got)
            if use is None:  # it runs at another rate than asked: size the period for that rate
                pcm.close()
                try:
                    pcm = open_pcm(self.kind, name, self.want.params(got.rate, got.channels), self.key, nonblock=True)
                except FormatRefused:
                    pcm = open_pcm(self.kind, name, self.want.params(rate, channels), self.key, nonblock=True)
                again = format_of(pcm.info())
                use = decide(self.kind, self.device, self.key, self.want, again) or again
            if tried:
                log.debug("%s device %s refused %s (Hz/channels)", self.kind, self.device, ", ".join(tried))
            return pcm, use
        raise ConfigError(
            f"{self.key}: the ALSA {self.kind} device '{self.device}' refused every format pivoice can use "
            f"({'/'.join(map(str, FALLBACK_RATES))} Hz, 1-{MAX_CHANNELS} channels). Use its 'plughw:' "
            f"name, which has ALSA convert."
        )
