"""One wake-word engine over one recording, in its own process; prints one JSON line. Used by
bench/wake_cost.py (and the `listen` mode by bench/footprint.py). Not meant to be run by hand.

    python _engines.py ENGINE WORDS AUDIO.raw [MODELS_DIR]     ENGINE: pivoice, litert, pyopen, openwakeword
    python _engines.py listen WORDS ALSA_DEVICE [MODELS_DIR]   the bare LiteRT loop on a live capture device
    python _engines.py listen-pivoice WORDS ALSA_DEVICE        pivoice's capture-to-detector path on one

Each engine runs alone in its process: pyopen-wakeword's bundled TFLite C library and tflite-runtime
must never share a process with LiteRT (it aborts with "stack smashing detected"). This file imports
nothing from pivoice at module level, so it also runs in the separate Python 3.11 / numpy<2 venv that
upstream openwakeword needs.

CPU is time.process_time() (every thread of the process) around the scoring loop only: loading the
models and reading the recording into memory are not counted, and nor is the interpreter's start.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

RATE = 16000
PREROLL_RING_SECONDS = 3.0  # pivoice.assistant.PREROLL_RING_SECONDS (not imported: the path needs no more)
CHUNK = 1280  # 80 ms: one openWakeWord step
THRESHOLD = 0.5
REFRACTORY = 25  # chunks (2 s): a score that dips and rises again within one wake word is one detection


def rising_edges(scores: list[float]) -> int:
    """Detections: upward crossings of the threshold at least REFRACTORY chunks after the previous one."""
    n, last = 0, -REFRACTORY
    for k, s in enumerate(scores):
        if s >= THRESHOLD and k - last >= REFRACTORY:
            n += 1
            last = k
    return n


# -- the bare baseline: the same models on ai-edge-litert, the smallest loop that does the job --------
class BareChain:
    """melspectrogram -> embedding -> classifiers, one 1280-sample chunk at a time, framing as pivoice's
    (the newest 1760 samples, the newest 76 mel frames), so the scores are pivoice's to the last bit."""

    def __init__(self, words: list[str], models: Path):
        from ai_edge_litert.interpreter import Interpreter

        def load(path, shape=None):
            it = Interpreter(model_path=str(path), num_threads=1)
            i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
            if shape:
                it.resize_tensor_input(i, shape)
            it.allocate_tensors()
            return it, i, o

        self.mel, self.mi, self.mo = load(models / "melspectrogram.tflite", [1, 1760])
        self.emb, self.ei, self.eo = load(models / "embedding_model.tflite", [1, 76, 32, 1])
        self.words = []
        for w in words:
            it, i, o = load(models / f"{w}.tflite")
            self.words.append((w, it, i, o, int(it.get_input_details()[0]["shape"][1])))
        # Start as after silence (pivoice's reset state).
        self.mel.set_tensor(self.mi, np.zeros((1, 1760), np.float32))
        self.mel.invoke()
        quiet_mel = self.mel.get_tensor(self.mo).reshape(-1, 32)[0] / 10 + 2
        self.emb.set_tensor(self.ei, np.ascontiguousarray(np.broadcast_to(quiet_mel, (1, 76, 32)), np.float32)[..., None])
        self.emb.invoke()
        quiet_emb = self.emb.get_tensor(self.eo).reshape(96)
        self.samples = np.zeros(1760, np.float32)
        self.mels = np.tile(quiet_mel, (76, 1)).astype(np.float32)
        self.embs = np.tile(quiet_emb, (max(w[4] for w in self.words), 1)).astype(np.float32)

    def chunk(self, x: np.ndarray) -> list[float]:
        s = self.samples
        s[:-CHUNK] = s[CHUNK:]
        s[-CHUNK:] = x
        self.mel.set_tensor(self.mi, s[None, :])
        self.mel.invoke()
        m = self.mels
        m[:-8] = m[8:]
        m[-8:] = self.mel.get_tensor(self.mo).reshape(8, 32) / 10 + 2
        self.emb.set_tensor(self.ei, m[None, :, :, None])
        self.emb.invoke()
        e = self.embs
        e[:-1] = e[1:]
        e[-1] = self.emb.get_tensor(self.eo).reshape(96)
        out = []
        for _, it, i, o, n in self.words:
            it.set_tensor(i, e[None, -n:])
            it.invoke()
            out.append(float(it.get_tensor(o)[0, 0]))
        return out


def run_litert(words, pcm: np.ndarray, models: Path) -> dict:
    chain = BareChain(words, models)
    scores = []
    t0, w0 = time.process_time(), time.monotonic()
    for k in range(pcm.size // CHUNK):
        scores.append(chain.chunk(pcm[k * CHUNK : (k + 1) * CHUNK].astype(np.float32)))
    cpu, wall = time.process_time() - t0, time.monotonic() - w0
    return result(words, pcm.size, cpu, wall, [[s[j] for s in scores] for j in range(len(words))])


# -- pivoice's capture-to-detector path ------------------------------------------------------------
async def _consume(cap, preroll, total) -> tuple[int, float, float]:
    """Start `cap` and take its (frame, detection) hand-overs as Assistant._route_audio does while idle
    (`frames()`, the pre-roll ring, the detection counted) until sample `total`; returns (detections,
    CPU s of all threads, wall s)."""
    import asyncio

    hits, last = 0, -REFRACTORY * CHUNK
    t0, w0 = time.process_time(), time.monotonic()
    cap.start(asyncio.get_running_loop())
    async for item, hit in cap.frames():
        preroll.append(item)
        if hit is not None and hit.end - last >= REFRACTORY * CHUNK:
            hits += 1
            last = hit.end
        if item.end >= total:
            break
    return hits, time.process_time() - t0, time.monotonic() - w0


def run_pivoice(words, pcm: np.ndarray | None, models: Path, device: str = "mic_file") -> dict:
    """pivoice.audio.capture.Capture on an ALSA file-plugin PCM (HOME holds the .asoundrc), scoring each
    frame in its thread with pivoice.wake.detector.WakeDetector.score, consumed by an asyncio loop as
    Assistant._route_audio consumes it while idle: `async for item, hit in capture.frames()`, the
    pre-roll ring append, then the detection (counted, not acted on)."""
    import asyncio

    from pivoice.audio.capture import Capture
    from pivoice.audio.ring import PreRoll
    from pivoice.wake.detector import WakeDetector, resolve_models

    total = pcm.size if pcm is not None else float("inf")  # None: a live device, until killed

    async def main() -> dict:
        det = WakeDetector(resolve_models(list(words)), THRESHOLD)
        cap = Capture(device, scorer=det.score, patient=det.patient)  # as pivoice.daemon.build wires them
        cap.open()
        await det.load()
        cap.scoring = cap.idle = True  # as the assistant sets them while it waits for the wake word
        preroll = PreRoll(PREROLL_RING_SECONDS)
        if pcm is None:
            print("READY", flush=True)
        hits, cpu, wall = await _consume(cap, preroll, total)
        r = result(words, total, cpu, wall, None)  # threads: running
        r["hits"] = {"any": hits}
        cap.close()
        det.close()
        return r

    return asyncio.run(main())


# -- where pivoice's extra CPU goes (wake_cost.py --explain) ---------------------------------------------
def run_pivoice_engine(words, pcm: np.ndarray, models: Path) -> dict:
    """pivoice's OpenWakeWordEngine alone, fed 80 ms frames from memory in one thread."""
    from pivoice.wake.openwakeword import OpenWakeWordEngine

    engine = OpenWakeWordEngine({w: models / f"{w}.tflite" for w in words})
    raw = pcm.astype("<i2").tobytes()
    t0, w0 = time.process_time(), time.monotonic()
    for k in range(pcm.size // CHUNK):
        engine.process(raw[k * CHUNK * 2 : (k + 1) * CHUNK * 2])
    return result(words, pcm.size, time.process_time() - t0, time.monotonic() - w0, None)


def run_pivoice_score(words, pcm: np.ndarray, models: Path) -> dict:
    """WakeDetector.score (the engine plus the detector's bookkeeping) on frames from memory, one thread."""
    import asyncio

    from pivoice.audio.ring import Frame
    from pivoice.wake.detector import WakeDetector, resolve_models

    raw = pcm.astype("<i2").tobytes()
    det = WakeDetector(resolve_models(list(words)), THRESHOLD)
    asyncio.run(det.load())
    t0, w0 = time.process_time(), time.monotonic()
    for k in range(pcm.size // CHUNK):
        det.score(Frame(k * CHUNK, raw[k * CHUNK * 2 : (k + 1) * CHUNK * 2]))
    r = result(words, pcm.size, time.process_time() - t0, time.monotonic() - w0, None)
    det.close()
    return r


def run_pivoice_capture(words, pcm: np.ndarray, models: Path, device: str = "mic_file") -> dict:
    """Capture alone (scoring off, idle): the ALSA reads and the capture thread -> event loop hand-over."""
    import asyncio

    from pivoice.audio.capture import Capture

    async def main() -> dict:
        cap = Capture(device)
        cap.open()
        cap.idle = True
        t0, w0 = time.process_time(), time.monotonic()
        cap.start(asyncio.get_running_loop())
        async for item, _ in cap.frames():
            if item.end >= pcm.size:
                break
        r = result(words, pcm.size, time.process_time() - t0, time.monotonic() - w0, None)
        cap.close()
        return r

    return asyncio.run(main())


def run_pivoice_quiet(words, pcm: np.ndarray, models: Path, device: str = "mic_file") -> dict:
    """A prototype, bench code built from pivoice's classes: as pivoice's path, but the capture thread also
    keeps the pre-roll ring and hands a frame to the event loop only with a detection (and, here, the last
    frame), so while idle no frame crosses threads. What is left of pivoice's extra is that hand-over."""
    import asyncio

    from pivoice.audio.capture import Capture
    from pivoice.audio.ring import PreRoll
    from pivoice.wake.detector import WakeDetector, resolve_models

    preroll = PreRoll(PREROLL_RING_SECONDS)

    class QuietCapture(Capture):
        def _put(self, loop, items):
            keep = []
            for frame, hit in items:
                if hit is None and frame.end < pcm.size:
                    preroll.append(frame)
                else:
                    keep.append((frame, hit))
            return super()._put(loop, keep) if keep else True

    async def main() -> dict:
        det = WakeDetector(resolve_models(list(words)), THRESHOLD)
        cap = QuietCapture(device, scorer=det.score)
        cap.open()
        await det.load()
        cap.scoring = True
        hits, cpu, wall = await _consume(cap, preroll, pcm.size)
        r = result(words, pcm.size, cpu, wall, None)
        r["hits"] = {"any": hits}
        cap.close()
        det.close()
        return r

    return asyncio.run(main())


# -- the references ------------------------------------------------------------------------------
def run_pyopen(words, pcm: np.ndarray, models: Path) -> dict:
    from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

    features = OpenWakeWordFeatures.from_builtin()
    detectors = [OpenWakeWord.from_builtin(Model(w)) for w in words]
    raw = pcm.astype("<i2").tobytes()
    scores = [[] for _ in words]
    t0, w0 = time.process_time(), time.monotonic()
    for k in range(pcm.size // CHUNK):
        for emb in features.process_streaming(raw[k * CHUNK * 2 : (k + 1) * CHUNK * 2]):
            for j, d in enumerate(detectors):
                for p in d.process_streaming(emb):
                    scores[j].append(p)
    cpu, wall = time.process_time() - t0, time.monotonic() - w0
    return result(words, pcm.size, cpu, wall, scores)


def run_openwakeword(words, pcm: np.ndarray, models: Path) -> dict:
    """Upstream openwakeword (tflite-runtime), given the model files (it cannot download its own here)."""
    from openwakeword.model import Model

    m = Model(wakeword_models=[str(models / f"{w}.tflite") for w in words], inference_framework="tflite",
              melspec_model_path=str(models / "melspectrogram.tflite"),
              embedding_model_path=str(models / "embedding_model.tflite"))
    scores = [[] for _ in words]
    t0, w0 = time.process_time(), time.monotonic()
    for k in range(pcm.size // CHUNK):
        p = m.predict(pcm[k * CHUNK : (k + 1) * CHUNK])
        for j, w in enumerate(words):
            scores[j].append(float(p[w]))
    cpu, wall = time.process_time() - t0, time.monotonic() - w0
    return result(words, pcm.size, cpu, wall, scores)


def result(words, samples, cpu, wall, scores) -> dict:
    import threading

    r = {"audio_s": samples / RATE, "cpu_s": cpu, "wall_s": wall, "threads": threading.active_count()}
    try:  # OS threads, including ones native libraries started
        r["os_threads"] = len(list(Path("/proc/self/task").iterdir()))
    except OSError:
        pass
    if scores is not None:
        r["peak"] = {w: round(max(s), 4) for w, s in zip(words, scores, strict=True)}
        r["hits"] = {w: rising_edges(s) for w, s in zip(words, scores, strict=True)}
    return r


# -- live: the bare loop on a capture device (footprint baseline) ----------------------------------
def listen(words, device: str, models: Path, period: int = CHUNK) -> None:
    """The models on a chunk at a time, read in `period`-frame periods (a buffer of 320 ms)."""
    import alsaaudio

    chain = BareChain(words, models)
    pcm = alsaaudio.PCM(alsaaudio.PCM_CAPTURE, alsaaudio.PCM_NORMAL, device=device, channels=1, rate=RATE,
                        format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=period, periods=4 * CHUNK // period)
    print("READY", flush=True)
    pending = b""
    while True:
        n, data = pcm.read()
        if n <= 0:
            continue
        pending += data
        while len(pending) >= CHUNK * 2:
            chain.chunk(np.frombuffer(pending[: CHUNK * 2], "<i2").astype(np.float32))
            pending = pending[CHUNK * 2 :]


def main() -> None:
    engine, words = sys.argv[1], sys.argv[2].split(",")
    models = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    if models is None:
        import pyopen_wakeword

        models = Path(pyopen_wakeword.__file__).parent / "models"
    if engine in ("listen", "listen-40ms"):
        listen(words, sys.argv[3], models, CHUNK if engine == "listen" else CHUNK // 2)
        return
    if engine == "listen-pivoice":
        run_pivoice(words, None, models, device=sys.argv[3])
        return
    pcm = np.fromfile(sys.argv[3], dtype="<i2")
    run = {"pivoice": run_pivoice, "litert": run_litert, "pyopen": run_pyopen,
           "openwakeword": run_openwakeword, "pivoice-engine": run_pivoice_engine,
           "pivoice-score": run_pivoice_score, "pivoice-capture": run_pivoice_capture,
           "pivoice-quiet": run_pivoice_quiet}[engine]
    print(json.dumps(run(words, pcm, models)), flush=True)


if __name__ == "__main__":
    main()
