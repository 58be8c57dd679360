"""Automatic gain and noise suppression on the microphone (audio.auto_gain_dbfs, audio.noise_suppression).

WebRTC's audio processing through webrtc-noise-gain (the Open Home Foundation's wrapper, used by
wyoming-satellite and linux-voice-assistant): an optional extra (`pivoice[noise]`), imported only when one
of the two settings is on, so a speaker that does not use it pays nothing.

Where each runs, in the capture thread (capture.py), follows bench/noise_gain.py's figures (BENCHMARKS.md):
  - automatic gain after the echo canceller (which needs the microphone as the room made it) and before the
    wake-word detector: with it the detector heard more of the noisy test clips;
  - noise suppression after the detector, on what goes to the pre-roll and the Live API only: before the
    detector it lowered the scores in noise, while what it hands on is closer to the clean voice.
Each is its own WebRTC processor. WebRTC takes 10 ms at a time; a capture period is 8 of those at 16 kHz.
When a frame does not end on a 10 ms boundary (a device at another rate, its audio converted; a period
that is not a multiple of 10 ms), the output is delayed by 10 ms from then on (10 ms of silence inserted
once, where it happens), so every frame still comes out whole, with as many samples as went in.
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import ConfigError

CHUNK = 320  # bytes: 10 ms of 16 kHz s16le mono, what WebRTC processes at a time
PACKAGE = "webrtc-noise-gain"
INSTALL = "{python} -m pip install 'webrtc-noise-gain>=1.2,<2'"  # (the extra 'noise' in pyproject.toml)


class WebRtc:
    def __init__(self, suppression: int, auto_gain_dbfs: int):
        """`suppression` 0 (off) to 4 (strongest); `auto_gain_dbfs` 0 (off), or on: WebRTC's adaptive
        digital gain, with this as the target level of its older gain controller, in dB below full scale
        (bench/noise_gain.py measured no difference between 3 and 31 with this package). Raises
        ModuleNotFoundError when the package is not installed (make() says what to do)."""
        from webrtc_noise_gain import AudioProcessor

        self._processor: Any = AudioProcessor(auto_gain_dbfs, suppression)
        self._pending = b""  # input after the last whole 10 ms
        self._out = bytearray()  # processed, not handed out yet
        self.delayed = False  # the output runs 10 ms behind (since a frame ended off a 10 ms boundary)

    def __call__(self, pcm: bytes) -> bytes:
        """The cleaned audio: as many samples as `pcm`, in order."""
        data = self._pending + pcm if self._pending else pcm
        whole = len(data) - len(data) % CHUNK
        process = self._processor.Process10ms
        for i in range(0, whole, CHUNK):
            self._out += process(data[i : i + CHUNK]).audio
        self._pending = data[whole:]
        if len(self._out) < len(pcm):
            # From now on 10 ms behind: what is held back (under 10 ms) is always covered.
            self._out[:0] = bytes(CHUNK)
            self.delayed = True
        out = bytes(self._out[: len(pcm)])
        del self._out[: len(pcm)]
        return out


def make(suppression: int, auto_gain_dbfs: int) -> tuple[WebRtc | None, WebRtc | None]:
    """(automatic gain, noise suppression) as the settings ask for them, each None when off. A ConfigError
    naming the keys that are on when the package is not installed, or cannot be loaded."""
    try:
        return (WebRtc(0, auto_gain_dbfs) if auto_gain_dbfs else None,
                WebRtc(suppression, 0) if suppression else None)
    except ImportError as e:
        keys = " and ".join(k for k, v in (("audio.auto_gain_dbfs", auto_gain_dbfs),
                                           ("audio.noise_suppression", suppression)) if v)
        if isinstance(e, ModuleNotFoundError) and e.name == "webrtc_noise_gain":
            problem = f"{PACKAGE} is not installed in pivoice's Python ({sys.executable})"
        else:
            problem = f"{PACKAGE} cannot be loaded ({e})"
        raise ConfigError(f"{keys} {'are' if ' and ' in keys else 'is'} on, but {problem}. Install it with: "
                          f"sudo {INSTALL.format(python=sys.executable)}, or set {keys} "
                          f"to 0.") from None
