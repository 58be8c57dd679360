"""What an ALSA device accepts (rates, channel counts, sample formats), asked of alsa-lib directly.

pyalsaaudio's getchannels() walks every count up to the device's maximum, which for a plugin such as
'pulse' or 'file' is 4294967295: it never returns. This asks alsa-lib's hw_params with ctypes instead,
testing only the values pivoice could use. The device is opened non-blocking and closed at once.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import alsaaudio

from .alsa import LIBASOUND
from .device import FALLBACK_RATES, MAX_CHANNELS, SAMPLE_FORMATS
from .format import IN_RATE, OUT_RATE

RATES = tuple(sorted({8000, 11025, IN_RATE, 22050, OUT_RATE, 32000, 44100, 48000, 96000, *FALLBACK_RATES}))
_FORMATS = {name: getattr(alsaaudio, f"PCM_FORMAT_{name}") for name in SAMPLE_FORMATS}
_NONBLOCK = 1  # SND_PCM_NONBLOCK


@dataclass(frozen=True)
class Accepts:
    rates: tuple[int, ...]  # of RATES
    rate_range: tuple[int, int]
    channels: tuple[int, ...]  # of 1..MAX_CHANNELS
    channel_range: tuple[int, int]
    formats: tuple[str, ...]  # of the sample formats pivoice converts

    def describe(self) -> str:
        lo, hi = self.rate_range
        rates = ("any rate" if lo <= 8000 and hi >= 96000 and len(self.rates) == len(RATES)
                 else ", ".join(str(r) for r in self.rates) + " Hz")
        clo, chi = self.channel_range
        channels = (f"{clo}-{chi if chi < 1000 else 'any'}" if clo != chi else str(clo))
        return (f"{rates}; channels {channels}; "
                f"samples {', '.join(self.formats) or 'none pivoice can convert'}")


def _lib() -> ctypes.CDLL:
    return ctypes.CDLL(LIBASOUND)


def accepts(name: str, capture: bool) -> Accepts | str:
    """What the device `name` accepts, or why it cannot be opened now (alsa-lib's reason)."""
    lib = _lib()
    lib.snd_strerror.restype = ctypes.c_char_p
    pcm = ctypes.c_void_p()
    err = lib.snd_pcm_open(ctypes.byref(pcm), name.encode(), 1 if capture else 0, _NONBLOCK)
    if err < 0:
        return lib.snd_strerror(err).decode()
    try:
        params = ctypes.create_string_buffer(lib.snd_pcm_hw_params_sizeof())
        err = lib.snd_pcm_hw_params_any(pcm, params)
        if err < 0:
            return lib.snd_strerror(err).decode()
        lo, hi = ctypes.c_uint(), ctypes.c_uint()
        lib.snd_pcm_hw_params_get_rate_min(params, ctypes.byref(lo), None)
        lib.snd_pcm_hw_params_get_rate_max(params, ctypes.byref(hi), None)
        rate_range = (lo.value, hi.value)
        lib.snd_pcm_hw_params_get_channels_min(params, ctypes.byref(lo))
        lib.snd_pcm_hw_params_get_channels_max(params, ctypes.byref(hi))
        channel_range = (lo.value, hi.value)
        rates = tuple(r for r in RATES if lib.snd_pcm_hw_params_test_rate(pcm, params, r, 0) == 0)
        channels = tuple(c for c in range(1, MAX_CHANNELS + 1)
                         if lib.snd_pcm_hw_params_test_channels(pcm, params, c) == 0)
        formats = tuple(n for n, v in _FORMATS.items() if lib.snd_pcm_hw_params_test_format(pcm, params, v) == 0)
        return Accepts(rates, rate_range, channels, channel_range, formats)
    finally:
        lib.snd_pcm_close(pcm)
