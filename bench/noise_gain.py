"""Benchmark 6: automatic gain and noise suppression on the microphone (audio.auto_gain_dbfs,
audio.noise_suppression; pivoice/audio/noise.py, WebRTC's through webrtc-noise-gain): what each setting does
to wake-word detection and to what the Live API gets, and what it costs, against no processing, in one run.

Wired as the capture thread does it: automatic gain before the wake-word detector, noise suppression after
it (on what goes to the Live API). One more row puts suppression before the detector, to show why not.
  - detection: the engine pivoice runs (openWakeWord on LiteRT, hey_jarvis, threshold 0.5), fed 80 ms
    frames, on the two "hey jarvis" test clips (two espeak-ng voices) after 5 s of the same noise (the
    processing runs all the time in the daemon: it has learnt the room when the wake word comes), clean and
    in white noise at 20, 10, 5 and 0 dB SNR, at the recorded level and 20 dB quieter (a microphone set too
    low); and on bench/wake_cost.py's recording (--minutes long: room noise, silence, a minute of unrelated
    speech clean and at 10 and 5 dB SNR, two "hey jarvis" commands): detections over 2 are false accepts;
  - what the Live API gets: the correlation of the processed clip with the clean one (aligned), over the
    noisy clips;
  - cost: CPU seconds per second of audio of the processing alone, and that over the wake-word engine's own
    CPU on the same audio in the same run (what turning it on adds to listening).

    .venv/bin/python bench/noise_gain.py [--minutes 4]
"""

from __future__ import annotations

import argparse
import sys
import time

import _common as c
import numpy as np
from harness import aligned_correlation, read_wav, silence

THRESHOLD = 0.5
FRAME = 2560  # bytes: one 80 ms capture period at 16 kHz
REFRACTORY = 25  # scores (2 s): a score that dips and rises again within one wake word is one detection
SETTINGS = {  # name: (noise_suppression, auto_gain_dbfs, suppression before the detector)
    "off": (0, 0, False),
    "suppression 1": (1, 0, False),
    "suppression 2": (2, 0, False),
    "suppression 4": (4, 0, False),
    "auto gain 3": (0, 3, False),
    "auto gain 31": (0, 31, False),
    "auto gain 3 + suppression 2": (2, 3, False),
    "suppression 2 before the detector (not wired so)": (2, 0, True),
}
SNRS = (None, 20, 10, 5, 0)
VOICES = ("hey_jarvis.wav", "hey_jarvis_rp.wav")
MIN_MINUTES = 3.5  # the recording's two wake words are in its first 3.3 minutes


def clips() -> list[tuple[str, bytes, bytes | None]]:
    """(name, the clip, the clean clip when this one is noisy)."""
    from test_wake import noisy

    out = []
    for voice in VOICES:
        for quiet in (False, True):
            for snr in SNRS:
                clean = silence(5.0) + read_wav(voice) + silence(1.5)
                if quiet:
                    clean = (np.frombuffer(clean, "<i2") * 0.1).astype("<i2").tobytes()
                pcm = clean if snr is None else noisy(clean, snr_db=snr)  # the SNR is the same when quiet
                name = f"{voice.removesuffix('.wav')}{' -20 dB' if quiet else ''} {'clean' if snr is None else f'{snr} dB SNR'}"
                out.append((name, pcm, None if snr is None else clean))
    return out


class Chain:
    """One setting's processing, as capture.py wires it (or suppression first, for the comparison)."""

    def __init__(self, ns: int, agc: int, ns_first: bool):
        from pivoice.audio.noise import make

        self.auto_gain, self.suppress = make(ns, agc)
        self.ns_first = ns_first
        self.cpu = 0.0

    def __call__(self, frame: bytes) -> tuple[bytes, bytes]:
        """(what the detector hears, what goes to the Live API)."""
        t0 = time.process_time()
        if self.ns_first and self.suppress is not None:
            frame = self.suppress(frame)
            heard = sent = frame
        else:
            heard = self.auto_gain(frame) if self.auto_gain is not None else frame
            sent = self.suppress(heard) if self.suppress is not None else heard
        self.cpu += time.process_time() - t0
        return heard, sent


def run(engine, setting: tuple[int, int, bool], pcm: bytes) -> tuple[list[float], bytes, float, float]:
    """(scores, what the Live API would get, CPU s of the processing, CPU s of the engine)."""
    engine.reset()
    path = Chain(*setting)
    scores: list[float] = []
    sent = []
    t_eng = 0.0
    for i in range(0, len(pcm), FRAME):
        heard, out = path(pcm[i : i + FRAME])
        sent.append(out)
        t0 = time.process_time()
        for s in engine.process(heard):
            scores.append(s["hey_jarvis"])
        t_eng += time.process_time() - t0
    return scores, b"".join(sent), path.cpu, t_eng


LOAD = """
import sys, time
sys.path.insert(0, sys.argv[1])
def rss():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:")) / 1024
import numpy  # (pivoice has it loaded by then)
before, t0 = rss(), time.perf_counter()
from pivoice.audio.noise import make
auto_gain, suppress = make(2, 3)
auto_gain(bytes(2560)), suppress(bytes(2560))
print(rss() - before, (time.perf_counter() - t0) * 1000)
"""


def load_cost(rounds: int = 5) -> tuple[float, float]:
    """(MiB of RSS, ms) that turning both on adds to a process: the import, two processors, a frame each.
    Median over `rounds` fresh processes."""
    import subprocess

    runs = [subprocess.run([c.venv_python(), "-c", LOAD, str(c.ROOT)], capture_output=True, text=True,
                           check=True).stdout.split() for _ in range(rounds)]
    return c.median([float(r[0]) for r in runs]), c.median([float(r[1]) for r in runs])


def detections(scores: list[float]) -> int:
    n, last = 0, -REFRACTORY
    for i, s in enumerate(scores):
        if s >= THRESHOLD and i - last >= REFRACTORY:
            n, last = n + 1, i
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=4.0,
                    help=f"length of the false-accept recording (default 4, at least {MIN_MINUTES})")
    args = ap.parse_args()
    if args.minutes < MIN_MINUTES:
        ap.error(f"--minutes: at least {MIN_MINUTES} (the recording's two wake words must be in it)")
    c.require("sox")
    command = "bench/noise_gain.py " + " ".join(sys.argv[1:])
    started = time.monotonic()
    from wake_cost import build_recording

    from pivoice.wake.detector import load_engine, resolve_models

    engine = load_engine(resolve_models(["hey_jarvis"]))
    test_clips = clips()
    recording, what = build_recording(args.minutes)
    rec = recording.tobytes()
    audio_s = (len(rec) + sum(len(pcm) for _, pcm, _ in test_clips)) / 32000
    rows, per_clip, verdicts = [], {}, {}
    base: dict[str, float] = {}
    for name, setting in SETTINGS.items():
        print(f"{name} ...", file=sys.stderr, flush=True)
        best, corr, hits, t_proc, t_eng = [], [], 0, 0.0, 0.0
        for clip, pcm, clean in test_clips:
            scores, sent, tp, te = run(engine, setting, pcm)
            best.append(max(scores))
            hits += max(scores) >= THRESHOLD
            per_clip.setdefault(clip, []).append(max(scores))
            if clean is not None:
                corr.append(aligned_correlation(np.frombuffer(clean, "<i2"), np.frombuffer(sent, "<i2")))
            t_proc, t_eng = t_proc + tp, t_eng + te
        scores, _, tp, te = run(engine, setting, rec)
        t_proc, t_eng = t_proc + tp, t_eng + te
        found = detections(scores)
        misses, false = max(0, 2 - found), max(0, found - 2)
        if name == "off":
            base = {"hits": hits, "false": false, "corr": float(np.mean(corr))}
        fewer = hits < base["hits"] or false > base["false"]
        verdicts[name] = ("WORSE" if fewer else "better" if hits > base["hits"] else "same") + " detection, " + \
            ("closer" if np.mean(corr) > base["corr"] + 0.01 else "further" if np.mean(corr) < base["corr"] - 0.01
             else "as close") + " to the voice"
        rows.append([name, f"{hits}/{len(test_clips)}", f"{np.mean(best):.2f}", f"{min(best):.2f}",
                     f"{found} ({misses} missed, {false} false)", f"{np.mean(corr):.3f}",
                     f"{t_proc / audio_s * 1000:.2f}",
                     f"{t_proc / t_eng:.2f}" if t_proc else "-", verdicts[name] if name != "off" else "(baseline)"])
    print(c.header("Automatic gain and noise suppression: wake-word detection, what the Live API gets, cost", command))
    print(f"clips    {len(test_clips)}: 2 voices x (recorded level, -20 dB) x (clean, 20, 10, 5, 0 dB SNR white "
          f"noise), each after 5 s of its noise")
    print(f"record   {what}")
    print()
    print(c.table(rows, ["setting (suppression 0-4, auto gain dBFS)", "clips heard", "mean best", "worst best",
                         "recording: detections", "to Live API: corr", "CPU ms/s", "x engine", "vs off"],
                  "lrrrrrrrl"))
    print()
    print(c.table([[clip, *(f"{s:.2f}" for s in v)] for clip, v in per_clip.items()],
                  ["best score per clip", *(n.split(" (")[0] for n in SETTINGS)]))
    print()
    print(f"clips heard: best hey_jarvis score >= {THRESHOLD}; recording: crossings of {THRESHOLD}, at most one per "
          "2 s, 2 expected. to Live API: correlation with the clean clip of what would be sent, mean over the 16 "
          "noisy clips. CPU ms/s: the processing alone, per second of audio (all clips and the recording); "
          "x engine: that over the wake-word engine's own CPU on the same audio, in this run.")
    print("vs off: detection WORSE = fewer clips heard or more false accepts; better = more heard, no more false; "
          "closer/further = the correlation 0.01 or more above/below off's.")
    good = [n for n, v in verdicts.items() if v.startswith(("better", "same")) and n != "off"]
    print(f"verdict: no worse at detecting: {', '.join(good) if good else 'none'}; "
          f"worse: {', '.join(n for n, v in verdicts.items() if v.startswith('WORSE')) or 'none'}")
    mib, ms = load_cost()
    print(f"turning it on (the package imported, both processors made, a frame through each; median of 5 fresh "
          f"processes): +{mib:.1f} MiB RSS, {ms:.0f} ms")
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
