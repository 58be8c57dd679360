"""The end of a spoken turn, by energy, for when the server's activity detection is off (`vad.automatic =
false`) and the turn began with the wake word: no button is held to say when the person stopped."""

from __future__ import annotations

import numpy as np

from .format import IN_RATE, SAMPLE_DTYPE


class SpeechEnd:
    """End of speech by energy, for wake-word turns when the server's activity detection is off: after
    some speech, vad.silence_duration_ms (default 800 ms) of frames near the noise floor end it."""

    def __init__(self, silence_ms: int = 800):
        self.silence = silence_ms * IN_RATE // 1000
        self.active = False
        self._quiet = 0
        self._spoke = 0
        self._floor = 100.0

    def start(self) -> None:
        self.active, self._quiet, self._spoke = True, 0, 0

    def ended(self, pcm: bytes) -> bool:
        if not self.active:
            return False
        x = np.frombuffer(pcm, SAMPLE_DTYPE).astype(np.float32)
        rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
        if rms < 3 * self._floor:
            self._floor = 0.95 * self._floor + 0.05 * max(rms, 20.0)
            self._quiet += x.size
        else:
            self._quiet = 0
            self._spoke += x.size
        if self._spoke >= IN_RATE // 4 and self._quiet >= self.silence:
            self.active = False
            return True
        return False
