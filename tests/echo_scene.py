"""A simulated room for the echo canceller (tests/test_aec.py, bench/aec_cost.py): an answer played from
the spoken reply clips, heard by the microphone through a small room, later than the playback clock
says, with room noise and a person saying "hey jarvis" over it; and the canceller driven as the daemon
drives it (`played()` per 20 ms period with a jittered "heard at" time, `process()` per capture frame)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import soxr
from harness import read_wav

from pivoice.audio.capture import RATE, WANT

FRAME = WANT.params(RATE, 1).period_frames  # 16 kHz microphone frame: the capture period (40 ms)
PERIOD = 480  # 24 kHz playback period (20 ms)
LEAD = 1.0  # the answer starts being heard this far into the microphone signal (s)


def room(rng) -> np.ndarray:
    """Direct sound, two reflections (2.3 and 9.4 ms later), a diffuse tail from 25 to 50 ms."""
    ir = np.zeros(800)
    ir[0], ir[37], ir[150] = 1.0, 0.5, -0.3
    ir[400:] = rng.normal(0, 0.02, 400) * np.exp(-np.arange(400) / 100)
    return ir


@dataclass
class Scene:
    reply: np.ndarray  # 24 kHz, what is played
    mic: np.ndarray  # 16 kHz, what the microphone hears (echo, noise, the person)
    echo_only: np.ndarray  # the same without the person
    people: list[float] = field(default_factory=list)  # when the person starts saying "hey jarvis" (s)


def scene(seconds: float, delay: float, gain: float, people: list[float], seed: int = 7,
          pauses: list[tuple[float, float]] = ()) -> Scene:
    """`gain` 1.0: the echo as loud as the person (both clips' speech is about 3700 RMS); above about 1.3
    the 16-bit microphone clips on these clips. `people`: moments (s into the answer) the person speaks.
    `pauses`: (start, seconds) where the answer is digital silence (drive() plays nothing there)."""
    rng = np.random.default_rng(seed)
    one = np.concatenate([np.frombuffer(read_wav(n), "<i2") for n in ("reply_says_wake_24k.wav", "reply_24k.wav")])
    reply = np.tile(one, int(np.ceil(seconds * 24000 / one.size)))[: int(seconds * 24000)].astype(np.float32)
    for t, length in pauses:
        reply[int(t * 24000) : int((t + length) * 24000)] = 0
    n = int((seconds + LEAD + 1) * 16000)
    echo = np.convolve(soxr.resample(reply, 24000, 16000), room(rng))
    mic = rng.normal(0, 150, n)
    s = int((LEAD + delay) * 16000)
    mic[s : s + echo.size] += gain * echo[: n - s]
    quiet = mic.copy()
    person = np.frombuffer(read_wav("hey_jarvis_rp.wav"), "<i2").astype(np.float64)
    for t in people:
        i = int((LEAD + t) * 16000)
        mic[i : i + person.size] += person
    clip = lambda x: np.clip(x, -32768, 32767).astype(np.float32)  # noqa: E731
    return Scene(reply, clip(mic), clip(quiet), [LEAD + t for t in people])


def drive(aec, reply: np.ndarray, mic: np.ndarray, seed: int = 11, timer=None, frames=None, skip_silence=False,
          bias=None, lost: tuple[float, float] | None = None) -> tuple[np.ndarray, float, float]:
    """Feeds `aec` as the daemon would: periods written 80 ms before they are heard (heard-at times with
    4 ms of jitter), microphone frames read 3 ms after their last sample (5 ms of jitter).
    `frames`: frame lengths to cycle through (default FRAME). `skip_silence`: periods of digital silence
    are not played (the stream runs dry there, as between answers: the next period starts a new one).
    `bias(t)`: an error (s) in the heard-at estimates of the period heard at t. `lost` (t, seconds):
    capture loses that much audio at t (an overrun): the microphone index goes on, its time jumps.
    Returns (output, seconds of `timer` spent in process(), in played())."""
    rng = np.random.default_rng(seed)
    timer = timer or (lambda: 0.0)
    out, spent_process, spent_played = [], 0.0, 0.0
    pi, end, sizes, skew = 0, 0, frames or [FRAME], 0.0
    if lost is not None:
        i = int((LEAD + lost[0]) * 16000)
        mic = np.concatenate([mic[:i], mic[i + int(lost[1] * 16000) :]])
    while end + sizes[len(out) % len(sizes)] <= mic.size:
        n = sizes[len(out) % len(sizes)]
        end += n
        if lost is not None and end > (LEAD + lost[0]) * 16000:
            skew = lost[1]  # these samples were heard that much later than their index says
        now = end / 16000 + skew + 0.003
        while pi < reply.size and LEAD + (pi + PERIOD) / 24000 <= now + 0.08:
            period, heard = reply[pi : pi + PERIOD], LEAD + (pi + PERIOD) / 24000
            pi += PERIOD
            if skip_silence and not period.any():
                continue
            t = timer()
            aec.played(period.astype("<i2").tobytes(), heard + rng.normal(0, 0.004) + (bias(heard) if bias else 0))
            spent_played += timer() - t
        t = timer()
        out.append(aec.process(end, now + rng.normal(0, 0.005), mic[end - n : end].astype("<i2").tobytes()))
        spent_process += timer() - t
    return np.frombuffer(b"".join(out), "<i2").astype(np.float32), spent_process, spent_played
