"""The pre-roll ring: the last few seconds of captured frames, addressed by sample index."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .format import IN_RATE


@dataclass(frozen=True)
class Frame:
    """One capture period, 16 kHz mono s16le; `index` counts samples from the start of capture, `at` is
    when it was read (time.monotonic(), about when its last sample was heard)."""

    index: int
    pcm: bytes
    at: float = 0.0
    answering: bool = False  # captured while an answer played (Capture.answering)

    @property
    def end(self) -> int:
        return self.index + len(self.pcm) // 2


class PreRoll:
    """Keeps frames covering at least `seconds` of audio before the newest one."""

    def __init__(self, seconds: float, rate: int = IN_RATE):
        self._keep = int(seconds * rate)
        self._frames: deque[Frame] = deque()

    def append(self, frame: Frame) -> None:
        self._frames.append(frame)
        while self._frames and frame.end - self._frames[0].end >= self._keep:
            self._frames.popleft()

    def clear(self) -> None:
        self._frames.clear()

    def since(self, index: int) -> list[Frame]:
        """The frames from sample `index` on; the first is cut to start exactly at `index`."""
        out = []
        for f in self._frames:
            if f.end <= index:
                continue
            if f.index < index:
                f = Frame(index, f.pcm[(index - f.index) * 2 :], f.at, f.answering)
            out.append(f)
        return out
