"""`pivoice test-wake [--file clip.wav] [--seconds N]`: the wake-word scores over time, from the
microphone (as the daemon hears it: same device, format, channel and gain) or from a recording, with the
threshold and the detections marked, then a hint for wake.threshold.

Scores are printed for every 80 ms step in which a model scored at least SHOWN (the rest is silence or
unrelated sound, shown as one line per second when live so the person sees it is listening).
"""

from __future__ import annotations

import select
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from ..audio import noise
from ..audio.convert import Converter, amplify
from ..audio.device import Opener, wants
from ..audio.format import IN_RATE
from ..config import Settings
from ..errors import ConfigError
from ..wake.detector import load_engine, resolve_models
from .testmic import silent_for

SHOWN = 0.1  # scores below this are not printed
CLOSE = 0.15  # a best score this far below the threshold (or less) gets a hint
STEP = 1280  # samples: one score per model


def from_file(path: Path) -> Iterator[bytes]:
    """A WAV file (16-bit PCM, any rate and channels) as 16 kHz mono, a step at a time."""
    try:
        w = wave.open(str(path))  # noqa: SIM115 - closed by the with below, once it is known to be a WAV
    except (OSError, wave.Error, EOFError) as e:
        raise ConfigError(f"--file {path}: not a WAV file pivoice can read ({e})") from None
    with w:
        if w.getsampwidth() != 2:
            raise ConfigError(f"--file {path}: {8 * w.getsampwidth()}-bit samples; give a 16-bit PCM WAV "
                              f"(sox in.wav -b 16 out.wav)")
        convert = (Converter(w.getframerate(), w.getnchannels(), IN_RATE, 1)
                   if (w.getframerate(), w.getnchannels()) != (IN_RATE, 1) else None)
        while data := w.readframes(w.getframerate() // 10):
            yield convert(data) if convert else data
        if convert:
            yield convert.flush()
    yield b"\0\0" * IN_RATE  # a second of silence after it: a wake word at the very end is scored whole


def from_microphone(settings: Settings, seconds: float, out: TextIO) -> Iterator[bytes]:
    audio = settings.audio
    want, _, channel = wants(audio)
    pcm, got = Opener("capture", audio.input_device, "audio.input_device", want).open()
    if channel is not None and channel >= got.channels:
        pcm.close()
        raise ConfigError(f"audio.input_channel: it is {channel}, but the capture device {audio.input_device} has "
                          f"{got.channels} channel{'s' if got.channels > 1 else ''} (0 is the first)")
    convert = Converter(got.rate, got.channels, IN_RATE, 1, in_format=got.sample_format,
                        pick=channel if got.channels > 1 else None)
    gain = 10 ** (audio.input_gain_db / 20)
    print(f"Listening to {audio.input_device} ({got.describe()}) for {seconds:g} s: say the wake word a few "
          f"times, from where you would.", file=out)
    poll = select.poll()
    for fd, mask in pcm.polldescriptors():
        poll.register(fd, mask)
    heard, last = 0, time.monotonic()
    try:
        while heard < seconds * IN_RATE:
            n, data = pcm.read() if poll.poll(500) else (0, b"")
            if n <= 0:
                silent_for(last, audio.input_device)
            else:
                last = time.monotonic()
                pcm16 = amplify(convert(data), gain)
                heard += len(pcm16) // 2
                yield pcm16
    finally:
        pcm.close()


def run(settings: Settings, file: Path | None, seconds: float, out: TextIO = sys.stdout) -> int:
    threshold = settings.wake.threshold
    engine = load_engine(resolve_models(settings.wake.models))
    # As the daemon's detector hears it: after the automatic gain (noise suppression comes after the detector).
    auto_gain, _ = noise.make(0, settings.audio.auto_gain_dbfs)
    source = from_file(file) if file is not None else from_microphone(settings, seconds, out)
    print(f"Wake words {', '.join(settings.wake.models)}, threshold {threshold:g} (wake.threshold); scores"
          f"{' after the automatic gain (audio.auto_gain_dbfs)' if auto_gain else ''} of {SHOWN:g} and above:",
          file=out)
    best: dict[str, tuple[float, float]] = {}  # name: (score, seconds into the audio)
    detections = 0
    step = 0
    for chunk in source:
        for scores in engine.process(auto_gain(chunk) if auto_gain else chunk):
            step += 1
            t = step * STEP / IN_RATE
            shown = []
            for name, score in scores.items():
                if score > best.get(name, (-1.0, 0.0))[0]:
                    best[name] = (score, t)
                if score >= SHOWN:
                    hit = score >= threshold
                    detections += hit
                    bar = "#" * int(score * 20)
                    shown.append(f"{name} {score:.3f} {bar:<20}{' DETECTED' if hit else ''}")
            if shown:
                print(f"  {t:6.2f} s  " + "  ".join(shown), file=out)
            elif file is None and step % (IN_RATE // STEP) == 0:
                print(f"  {t:6.2f} s  (listening)", file=out)
    print(hint(best, threshold, detections), file=out)
    return 0


def hint(best: dict[str, tuple[float, float]], threshold: float, detections: int) -> str:
    lines = [f"Best: {', '.join(f'{n} {s:.3f} at {t:.2f} s' for n, (s, t) in best.items())}. "
             f"Steps at or above the threshold: {detections}."]
    top = max((s for s, _ in best.values()), default=0.0)
    if top >= threshold:
        margin = top - threshold
        lines.append("Heard." + (f" The best score is only {margin:.2f} above the threshold: a little further "
                                 f"away or quieter and it would be missed." if margin < 0.1 else ""))
    elif top >= threshold - CLOSE:
        lines.append(f"Close, but not heard: the best score is {threshold - top:.2f} below the threshold. Lower "
                     f"wake.threshold to about {max(0.05, top - 0.05):.2f} (more false wake-ups), or speak closer.")
    elif top >= SHOWN:
        lines.append("Not heard: something like it, far below the threshold. Is the level right (pivoice "
                     "test-mic)? Was it the wake word the models listen for?")
    else:
        lines.append("Nothing like the wake word was heard. Is the microphone working (pivoice test-mic)?")
    return "\n".join(lines)
