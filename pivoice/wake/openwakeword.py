"""openWakeWord's streaming feature pipeline on LiteRT (ai-edge-litert).

The pipeline (from openWakeWord): 16 kHz int16 audio -> melspectrogram model (32 mel bands, a frame every
10 ms) -> embedding model over 76 mel frames (775 ms), one embedding per 8 new mel frames (80 ms) -> one
classifier per wake word over its last N embeddings (N = 16 for the built-in models) -> a score in [0, 1].

Framing is upstream openWakeWord's: every 1280 new samples (80 ms) the mel model sees the newest 1760
samples, and the embedding takes the newest 76 mel frames. pyopen-wakeword's framing (pivoice's until
issue 14: the 1760 samples ending 800 before the newest, the 76 frames ending 4 before the newest) holds
every decision 1440 samples (90 ms) behind the audio; on the same placements of "hey jarvis"
(bench/wake_latency.py) upstream's decides about 100 ms sooner on clean speech, detects as many or more in
noise, and scores unrelated speech lower. Its scores differ from pyopen-wakeword's on the edges, so the
tests compare detections (tests/test_wake.py). The state starts as if 8 s of silence had been heard
(pyopen-wakeword's "autofill").

Looking ahead half a chunk (`lookahead`: the daemon's detector): when a word's score at the end of the
last chunk reached LOOKAHEAD_GATE, the chain also runs when the first half of the next chunk is in: the
mel model on the newest 1760 samples (its last 4 frames are new), the embedding on the newest 76 mel frames, and
the classifiers on the chunk embeddings (80 ms apart) with that one appended and the oldest dropped (the
last two 40 ms apart). The classifier sees the phrase's end 40 ms sooner; with 40 ms capture periods a
detection comes about 25 ms sooner on clean speech (bench/wake_latency.py). The chunk scores are not
changed by it, and the extra step runs only near a detection (a score of 0.1 or more), so listening costs
the same in model work (and while no word is near, the capture thread reads a chunk's two 40 ms periods
in one wake-up: `would_score`, audio/capture.py).

Interpreters run with one thread and the XNNPACK delegate (LiteRT's default resolver): with those, the
same models cost 0.017 CPU-seconds per audio second here, against 0.021 for openwakeword on
tflite-runtime; pyopen-wakeword's bundled library runs ten threads without XNNPACK and costs about 3x.
Why not the `openwakeword` package itself: it needs tflite-runtime, which has no wheels for Python 3.12+
(Raspberry Pi OS Trixie runs 3.13) and breaks on numpy 2, and it downloads its models at first use. So
pivoice carries this small pipeline on ai-edge-litert (wheels for 3.9-3.13 on aarch64 and x86_64) and
takes the model files from the pyopen-wakeword wheel, whose own engine is the reference the scores are
tested against (tests/test_wake.py).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..audio.format import IN_RATE, SAMPLE_DTYPE

SAMPLE_RATE = IN_RATE
CHUNK_SAMPLES = 1280  # 80 ms: one embedding, one score per wake word
MEL_WINDOW = 1760  # samples the mel model sees per chunk (the chunk plus 3 hops of context)
MEL_FRAMES_PER_CHUNK = 8
HALF = CHUNK_SAMPLES // 2  # 40 ms: where the lookahead scores
HALF_MEL_FRAMES = MEL_FRAMES_PER_CHUNK // 2  # new mel frames in half a chunk
LOOKAHEAD_GATE = 0.1  # a word's chunk score from which the middle of the next chunk is scored too
NUM_MELS = 32
EMB_WINDOW = 76  # mel frames per embedding
EMB_FEATURES = 96


class WakeModelError(Exception):
    """A wake-word model file that cannot be loaded."""


def builtin_models_dir() -> Path:
    """The folder of .tflite files shipped in the pyopen-wakeword wheel."""
    import pyopen_wakeword  # only for its data files: its code is never run here

    return Path(pyopen_wakeword.__file__).parent / "models"


def builtin_model_names() -> list[str]:
    shared = {"melspectrogram", "embedding_model"}
    return sorted(p.stem for p in builtin_models_dir().glob("*.tflite") if p.stem not in shared)


def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    try:
        return Interpreter(model_path=str(path), num_threads=1)
    except (ValueError, RuntimeError) as e:
        raise WakeModelError(f"{path} is not a usable TFLite model ({e})") from None


class _Model:
    """One LiteRT interpreter with fixed input and output tensors; a call holds `lock`."""

    def __init__(self, path: Path, lock: threading.Lock, input_shape: tuple[int, ...] | None = None,
                 classifier: bool = False):
        """classifier: the model must be an openWakeWord classifier (embeddings in, one score out),
        checked before LiteRT prepares it (another model, e.g. the melspectrogram one, can fail there)."""
        self.lock = lock
        self.interp = _interpreter(path)
        inp = self.interp.get_input_details()
        out = self.interp.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise WakeModelError(f"{path} is not an openWakeWord classifier ({len(inp)} input and {len(out)} "
                                 f"output tensors, expected one of each)")
        if classifier:
            _check_classifier(path, inp[0], out[0])
        self.input_index = inp[0]["index"]
        self.output_index = out[0]["index"]
        try:
            if input_shape is not None:
                self.interp.resize_tensor_input(self.input_index, list(input_shape))
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise WakeModelError(f"{path} cannot be prepared by LiteRT ({str(e).strip()[:200]})") from None
        self.input_shape = tuple(int(x) for x in self.interp.get_input_details()[0]["shape"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.lock:
            self.interp.set_tensor(self.input_index, x)
            self.interp.invoke()
            return self.interp.get_tensor(self.output_index)  # (a copy: the next call may overwrite the tensor)


def _check_classifier(path: Path, inp: dict, out: dict) -> None:
    """An openWakeWord classifier: float32 (1, N, 96) embeddings in, one float32 score out."""
    shape = tuple(int(x) for x in inp["shape"])
    out_shape = tuple(int(x) for x in out["shape"])
    if (len(shape) != 3 or shape[0] != 1 or shape[1] < 1 or shape[2] != EMB_FEATURES or inp["dtype"] != np.float32
            or int(np.prod(out_shape)) != 1 or out["dtype"] != np.float32):
        raise WakeModelError(
            f"{path} is not an openWakeWord classifier (input shape {shape}, output shape {out_shape}; "
            f"expected (1, N, {EMB_FEATURES}) float32 in, one float32 score out)"
        )


class _Models:
    """The interpreters of one set of wake words (melspectrogram, embedding, a classifier per word) and
    the features of silence, shared by the engines made with OpenWakeWordEngine.twin(). Each model call
    holds one lock, so engines fed in different threads may share them; the state of a stream is the
    engine's own. The price: while the guard scores an answer's audio (in bursts: the Live API sends it
    faster than real time), a model call of the capture thread may wait for one of the guard's, about a
    millisecond here (a few on a Pi), where separate interpreters would run on two cores at once."""

    def __init__(self, model_paths: dict[str, Path], features_dir: Path | None):
        features_dir = features_dir or builtin_models_dir()
        lock = threading.Lock()
        self.mel = _Model(features_dir / "melspectrogram.tflite", lock, (1, MEL_WINDOW))
        self.emb = _Model(features_dir / "embedding_model.tflite", lock, (1, EMB_WINDOW, NUM_MELS, 1))
        self.words = {name: _Model(path, lock, classifier=True) for name, path in model_paths.items()}
        self.history = max(m.input_shape[1] for m in self.words.values())
        # What 8 s of silence leave in the buffers, computed once.
        self.quiet_mel = self.mel(np.zeros((1, MEL_WINDOW), np.float32)).reshape(-1, NUM_MELS)[0] / 10 + 2
        window = np.broadcast_to(self.quiet_mel, (EMB_WINDOW, NUM_MELS))
        self.quiet_emb = self.emb(np.ascontiguousarray(window, np.float32)[None, :, :, None]).reshape(EMB_FEATURES)


class OpenWakeWordEngine:
    """Streaming wake-word scores for 16 kHz mono int16 audio.

    One thread feeds an engine (pivoice's detector: the capture thread); a twin, fed by another thread,
    shares its interpreters (the self-trigger guard's, on the answer's audio: pivoice/wake/self_trigger.py).
    """

    def __init__(self, model_paths: dict[str, Path], features_dir: Path | None = None, lookahead: bool = False,
                 _models: _Models | None = None):
        """`lookahead`: also score the middle of a chunk near a detection (the module's docstring). `_models`:
        twin()'s, instead of loading `model_paths`."""
        m = _models or _Models(model_paths, features_dir)
        self._models = m
        self._mel, self._emb, self._words, self._history = m.mel, m.emb, m.words, m.history
        self._quiet_mel, self._quiet_emb = m.quiet_mel, m.quiet_emb
        self._lookahead = lookahead
        self.reset()

    def twin(self, lookahead: bool = False) -> OpenWakeWordEngine:
        """Another engine on the same interpreters, starting as after a reset: a second stream for as
        little as its buffers (a second set of interpreters is ~9 MiB: the models' pages, XNNPACK's packed
        weights, LiteRT's arenas)."""
        return OpenWakeWordEngine({}, lookahead=lookahead, _models=self._models)  # (no paths: the models given)

    @property
    def names(self) -> list[str]:
        return list(self._words)

    def reset(self) -> None:
        """Forget everything heard: back to the state of a fresh start in silence."""
        self._samples = np.zeros(MEL_WINDOW, np.float32)  # the newest samples
        self._pending = b""  # int16 samples of the chunk in progress, kept as bytes until scored
        self._mels = np.tile(self._quiet_mel, (EMB_WINDOW, 1)).astype(np.float32)  # the newest mel frames
        self._embs = np.tile(self._quiet_emb, (self._history, 1)).astype(np.float32)
        self._near = False  # a word's score at the end of the last chunk reached LOOKAHEAD_GATE
        self._ahead = False  # the middle of the chunk in progress has been scored

    def would_score(self, samples: int) -> bool:
        """Whether `samples` more would be scored (complete a chunk, or its middle near a detection). When
        not, the capture thread may read them together with the next ones."""
        n = len(self._pending) // 2 + samples
        return n >= CHUNK_SAMPLES or (self._looks_ahead() and n >= HALF)

    def _looks_ahead(self) -> bool:
        """The middle of the chunk in progress is to be scored: a word is near, and it has not been yet."""
        return self._lookahead and self._near and not self._ahead

    def process(self, pcm: bytes) -> list[dict[str, float]]:
        """Feed int16 little-endian samples; returns one {name: score} per completed 80 ms chunk and, with
        `lookahead`, one for the middle of a chunk near a detection, in the order of the audio."""
        buf = self._pending + pcm if self._pending else pcm
        if not self.would_score(len(pcm) // 2):
            # Nothing to score yet (the first half of a chunk, with 40 ms periods): no numpy call, which
            # costs tens of microseconds in the capture thread (it wakes with cold caches).
            self._pending = buf
            return []
        audio = np.frombuffer(buf, dtype=SAMPLE_DTYPE).astype(np.float32)
        out = []
        pos = 0
        while audio.size - pos >= HALF:
            # Only while the chunk is not complete: with it in, its own score is as soon.
            if self._looks_ahead() and audio.size - pos < CHUNK_SAMPLES:
                out.append(self._middle(audio[pos : pos + HALF]))
                self._ahead = True
            if audio.size - pos < CHUNK_SAMPLES:
                break
            out.append(self._chunk(audio[pos : pos + CHUNK_SAMPLES]))
            self._ahead = False
            pos += CHUNK_SAMPLES
        self._pending = buf[2 * pos :]
        return out

    def _middle(self, half: np.ndarray) -> dict[str, float]:
        """Scores at the middle of the chunk in progress (`half`: its first half); changes no state."""
        # The mel model's frames shift with its input (160 samples per frame, exactly): on the newest
        # MEL_WINDOW samples its last 4 frames are the half chunk's, and no second interpreter is needed.
        window = np.concatenate([self._samples[HALF:], half])
        mels = self._mel(window[None, :]).reshape(-1, NUM_MELS)[-HALF_MEL_FRAMES:] / 10 + 2
        mels = np.concatenate([self._mels[HALF_MEL_FRAMES:], mels])
        emb = self._emb(np.ascontiguousarray(mels[None, :, :, None])).reshape(EMB_FEATURES)
        history = np.concatenate([self._embs[1:], emb[None]])
        return {name: float(model(history[None, -model.input_shape[1] :, :]).reshape(-1)[0])
                for name, model in self._words.items()}

    def _chunk(self, chunk: np.ndarray) -> dict[str, float]:
        s = self._samples
        s[:-CHUNK_SAMPLES] = s[CHUNK_SAMPLES:]
        s[-CHUNK_SAMPLES:] = chunk
        mels = self._mel(s[None, :]).reshape(-1, NUM_MELS) / 10 + 2
        self._mels = np.concatenate([self._mels[MEL_FRAMES_PER_CHUNK:], mels])
        emb = self._emb(np.ascontiguousarray(self._mels[None, :, :, None])).reshape(EMB_FEATURES)
        self._embs[:-1] = self._embs[1:]
        self._embs[-1] = emb
        scores = {}
        for name, model in self._words.items():
            n = model.input_shape[1]
            scores[name] = float(model(self._embs[None, -n:, :]).reshape(-1)[0])
        self._near = max(scores.values()) >= LOOKAHEAD_GATE
        return scores
