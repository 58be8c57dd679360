"""Benchmark 4: the echo canceller (pivoice/audio/aec.py): what it costs while pivoice answers, and what it
buys, on a simulated room, in one process and one run.

The scene is tests/echo_scene.py (shared with tests/test_aec.py): the spoken reply clips repeated to
--seconds, heard by the microphone through a small room `--delay` later than the playback clock says, at
--gains (1.0: the echo as loud as the person; above about 1.3 the 16-bit microphone clips), plus room
noise; a person says "hey jarvis" at --people moments over the answer's second half. The EchoCanceller
is driven as the daemon drives it: `played()` per 20 ms period, `process()` per capture frame. A second
table: the speaker's stream restarting mid-answer, a person talking over it soon after (tests/test_aec.py
has three of these cases).

Cost is thread CPU time per second of audio, beside the baseline that runs on every microphone frame
during an answer anyway: the wake-word engine (pivoice's OpenWakeWordEngine, 1 word). Quality is echo
return loss enhancement (ERLE: how much less echo after the canceller, over the answer's second half,
person-free) and how many of the person's wake words the detector hears, raw and after the canceller.

    .venv/bin/python bench/aec_cost.py [--seconds 60] [--delay 0.06] [--gains 0.5 1.0] [--people 6]
"""

from __future__ import annotations

import argparse
import time

import _common as c
import numpy as np
from echo_scene import LEAD, drive, scene

from pivoice.audio.aec import EchoCanceller
from pivoice.wake.openwakeword import OpenWakeWordEngine, builtin_models_dir


def wake_hits(engine, x: np.ndarray, starts: list[float]) -> int:
    """How many of the person's wake words (starting at `starts`, s) score 0.5 within 2.5 s."""
    engine.reset()
    scores = np.array([s["hey_jarvis"] for s in engine.process(x.astype("<i2").tobytes())])
    return sum(1 for t in starts if scores[int(t * 12.5) : int((t + 2.5) * 12.5)].max() >= 0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--delay", type=float, default=0.06)
    ap.add_argument("--gains", type=float, nargs="+", default=[0.5, 1.0])
    ap.add_argument("--people", type=int, default=6)
    a = ap.parse_args()
    print(c.header("Echo canceller: cost and effect", f"bench/aec_cost.py --seconds {a.seconds:g} "
                   f"--delay {a.delay:g} --gains {' '.join(f'{g:g}' for g in a.gains)} --people {a.people}"))
    engine = OpenWakeWordEngine({"hey_jarvis": builtin_models_dir() / "hey_jarvis.tflite"})
    rows = []
    for gain in a.gains:
        people = [a.seconds * (0.5 + 0.45 * i / max(1, a.people)) for i in range(a.people)]
        sc = scene(a.seconds, a.delay, gain, people)
        aec = EchoCanceller()
        out, cpu_aec, cpu_ref = drive(aec, sc.reply, sc.mic, timer=time.thread_time)
        quiet, out_quiet = sc.echo_only, drive(EchoCanceller(), sc.reply, sc.echo_only)[0]
        t = time.thread_time()
        raw_hits = wake_hits(engine, sc.mic, sc.people)
        cpu_wake = time.thread_time() - t
        aec_hits = wake_hits(engine, out, sc.people)
        lead = sc.people[0] - people[0]
        half = slice(int((lead + a.seconds / 2) * 16000), int((lead + a.seconds) * 16000))
        erle = 10 * np.log10(np.sum(quiet[half] ** 2) / np.sum(out_quiet[half] ** 2))
        audio = sc.mic.size / 16000
        rows.append([f"{gain:g}", f"{100 * cpu_aec / audio:.2f}%", f"{100 * cpu_ref / audio:.2f}%",
                     f"{100 * cpu_wake / audio:.2f}%", f"{(cpu_aec + cpu_ref) / cpu_wake:.2f}",
                     f"{aec.delay * 1000 / 16000:.0f} ms" if aec.delay is not None else "not found",
                     f"{erle:.1f} dB", f"{raw_hits}/{len(people)}", f"{aec_hits}/{len(people)}"])
    print(c.table(rows, ["echo gain", "process() CPU", "played() CPU", "wake engine CPU (baseline)",
                         "canceller / baseline", "delay found", "ERLE, 2nd half", "person heard raw",
                         "person heard after AEC"]))
    print(f"\nCPU: % of one core while answering ({a.seconds:g} s of answer). Delay found: beyond the playback "
          f"clock; the simulated room adds {a.delay * 1000:.0f} ms and the microphone clock 3 ms.")
    print()
    restart(engine)


RESTART_AT = 10.0  # s into the answer: the speaker's stream stops for 0.2 s (an underrun) and starts anew
BIASES = (0.0011, -0.002, 0.003, -0.0005)  # s: errors of the new stream's clock estimate


def restart(engine) -> None:
    """A new playback stream mid-answer (the speaker ran dry for 0.2 s and restarted), placed by a clock
    estimate a little off, a person saying the wake word 0.05-0.45 s after it resumes: is it heard?"""
    rows, hits, total = [], 0, 0
    for start in np.arange(RESTART_AT + 0.25, RESTART_AT + 0.66, 0.05):
        row = [f"{start - RESTART_AT - 0.2:.2f} s"]
        for bias in BIASES:
            sc = scene(14.0, delay=0.06, gain=1.0, people=[start], pauses=[(RESTART_AT, 0.2)])
            out = drive(EchoCanceller(), sc.reply, sc.mic, skip_silence=True,
                        bias=lambda u, b=bias: b if u > LEAD + RESTART_AT + 0.1 else 0.0)[0]
            heard = wake_hits(engine, out, sc.people)
            hits, total = hits + heard, total + 1
            row.append("heard" if heard else "missed")
        rows.append(row)
    print(c.table(rows, ["person starts after the restart", *(f"clock {b * 1000:+.1f} ms" for b in BIASES)]))
    print(f"person heard over a restarted stream: {hits} of {total} (echo as loud as the person)")


if __name__ == "__main__":
    main()
