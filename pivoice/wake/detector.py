"""The wake-word detector as the assistant sees it: frames in, a detection out, inference off the loop.

Model names in the config are either built-in openWakeWord models (the .tflite files shipped in the
pyopen-wakeword wheel, e.g. "hey_jarvis") or paths to custom openWakeWord .tflite classifiers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..audio.ring import Frame
from ..errors import ConfigError
from .openwakeword import SAMPLE_RATE, OpenWakeWordEngine, WakeModelError, builtin_model_names, builtin_models_dir

log = logging.getLogger("pivoice.wake")

STATS_EVERY_SECONDS = 10.0


@dataclass(frozen=True)
class Detection:
    name: str
    score: float
    end: int  # sample index (capture clock) of the end of the audio that was scored


def resolve_models(names: list[str]) -> dict[str, Path]:
    """Config names -> model files; an unknown name is a ConfigError listing what exists."""
    builtin = builtin_model_names()
    out: dict[str, Path] = {}
    for name in names:
        if name in builtin:
            out[name] = builtin_models_dir() / f"{name}.tflite"
            continue
        path = Path(name).expanduser()
        looks_like_path = "/" in name or name.endswith(".tflite")
        if looks_like_path and path.is_file():
            out[path.stem] = path
            continue
        if looks_like_path:
            raise ConfigError(
                f"wake.models: the model file {name} does not exist. Give the path of an openWakeWord "
                f".tflite classifier, or a built-in name ({', '.join(builtin)})."
            )
        raise ConfigError(
            f"wake.models: unknown wake word model '{name}'. Built-in models: {', '.join(builtin)}; "
            f"or give the path of a custom openWakeWord .tflite file."
        )
    return out


@contextlib.contextmanager
def _stderr_to_log():
    """LiteRT prints 'INFO: Created TensorFlow Lite XNNPACK delegate' to fd 2: keep it out of the journal."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines():
                log.debug("LiteRT: %s", line)


def load_engine(paths: dict[str, Path], lookahead: bool = False) -> OpenWakeWordEngine:
    """The engine over these model files, loaded in LiteRT; a ConfigError naming wake.models when a
    file is not a model, or not a wake-word classifier."""
    try:
        with _stderr_to_log():
            return OpenWakeWordEngine(paths, lookahead=lookahead)
    except WakeModelError as e:
        raise ConfigError(f"wake.models: {e}. Use a built-in name or an openWakeWord .tflite file.") from None


class WakeDetector:
    def __init__(self, models: dict[str, Path], threshold: float):
        """`models`: wake word name -> model file, as resolve_models() gives them."""
        self.threshold = threshold
        self._paths = models
        # LiteRT interpreters are not thread-safe: they are loaded off the event loop, then fed by the
        # capture thread (score()) and, through a twin engine, the self-trigger guard's thread: each model
        # call holds the models' lock (openwakeword.py).
        self._engine: OpenWakeWordEngine | None = None
        self._reset_pending = False
        self._heard = 0  # samples since the last stats line
        self._total = 0  # samples scored since start
        self._peak: dict[str, float] = {}
        # (end sample, best score) of the last ~5 s of chunks: what it heard, for bug reports and tests
        self.recent: deque[tuple[int, float]] = deque(maxlen=64)

    @property
    def names(self) -> list[str]:
        return list(self._paths)

    async def load(self) -> None:
        self._engine = await asyncio.to_thread(load_engine, self._paths, lookahead=True)
        log.info("wake word models loaded: %s (threshold %.2f)", ", ".join(self.names), self.threshold)

    def twin_engine(self) -> OpenWakeWordEngine:
        """An engine for another stream on this detector's interpreters (the self-trigger guard's: its
        own thread, no second copy of the models); after load()."""
        if self._engine is None:
            raise RuntimeError("WakeDetector.twin_engine() before load()")
        return self._engine.twin()

    def reset(self) -> None:
        """Forget what was heard (takes effect before the next frame is scored)."""
        self._reset_pending = True

    def patient(self, samples: int) -> bool:
        """A next frame of `samples` would not be scored alone (OpenWakeWordEngine.would_score); called in
        the capture thread."""
        return self._engine is not None and not self._reset_pending and not self._engine.would_score(samples)

    def score(self, frame: Frame) -> Detection | None:
        """Scores a frame (in the one thread that feeds the detector: the capture thread)."""
        if self._engine is None:
            raise RuntimeError("WakeDetector.score() before load()")
        if self._reset_pending:
            self._engine.reset()
            self._reset_pending = False
        hit = None
        for scores in self._engine.process(frame.pcm):
            self.recent.append((frame.end, max(scores.values())))
            for name, score in scores.items():
                self._peak[name] = max(self._peak.get(name, 0.0), score)
                if score >= self.threshold and (hit is None or score > hit.score):
                    hit = Detection(name, score, frame.end)
        self._heard += len(frame.pcm) // 2
        self._total += len(frame.pcm) // 2
        if self._heard >= STATS_EVERY_SECONDS * SAMPLE_RATE:
            # For tuning wake.threshold: how close the audio came, without logging audio itself.
            peaks = ", ".join(f"{n} {s:.3f}" for n, s in self._peak.items())
            log.debug("wake: %.1f s of audio scored in all; peak in the last %.0f s: %s",
                      self._total / SAMPLE_RATE, self._heard / SAMPLE_RATE, peaks)
            self._heard = 0
            self._peak.clear()
        return hit

    def close(self) -> None:
        self._engine = None
