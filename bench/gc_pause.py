"""Benchmark 5: how long a full cycle collection stops every thread of the daemon, with the heap pivoice
starts with frozen (pivoice/heap.py) and without, in one process and one run.

A full (generation 2) collection holds the GIL while it walks every tracked object: the capture and
playback threads wait that long. The process loads what the daemon loads before and after READY=1
(pivoice's modules, numpy, the wake-word models in LiteRT, google-genai's client), then keeps
`--conversation` objects alive as a conversation would (messages, transcripts), and times full
collections (`gc.collect()`): first as the heap is (the baseline), then after `heap.settle()`.

    .venv/bin/python bench/gc_pause.py [--repeat 9] [--conversation 5000]
"""

from __future__ import annotations

import argparse
import gc
import time

import _common as c


def pauses(repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        gc.collect()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--conversation", type=int, default=5000, help="objects a conversation keeps alive")
    a = ap.parse_args()
    print(c.header("full cycle collections in the daemon's heap", "bench/gc_pause.py"))

    import pivoice.daemon  # noqa: F401 - everything the daemon imports before READY=1
    from pivoice import heap
    from pivoice.config import LiveSettings
    from pivoice.live.setup import make_client
    from pivoice.wake.detector import load_engine, resolve_models

    engine = load_engine(resolve_models(["hey_jarvis"]))
    import google.genai  # noqa: F401 - what the daemon loads right after READY=1 (live/setup.py load_genai)

    gc.collect()
    before = len(gc.get_objects())
    talk = [{"text": f"turn {i}", "audio": bytes(8), "parts": [i, str(i)]} for i in range(a.conversation)]
    rows = []
    base = pauses(a.repeat)
    rows.append(["as loaded (baseline)", f"{len(gc.get_objects())}", f"{c.median(base):.1f}", f"{max(base):.1f}", "1.00"])
    heap.settle("start")
    client = make_client("bench-key-not-used", LiveSettings())
    frozen = pauses(a.repeat)
    rows.append(["start + google-genai frozen", f"{len(gc.get_objects())}", f"{c.median(frozen):.1f}",
                 f"{max(frozen):.1f}", f"{c.median(frozen) / c.median(base):.2f}"])
    talk2 = [{"text": f"turn {i}", "audio": bytes(8), "parts": [i, str(i)]} for i in range(a.conversation)]
    later = pauses(a.repeat)
    rows.append([f"frozen, then {a.conversation} more conversation objects", f"{len(gc.get_objects())}",
                 f"{c.median(later):.1f}", f"{max(later):.1f}", f"{c.median(later) / c.median(base):.2f}"])
    print(f"tracked objects before the conversation's: {before}; frozen: {gc.get_freeze_count()}")
    print(c.table(rows, ["heap", "objects walked", "median ms", "max ms", "ratio"]))
    del talk, talk2, client, engine


if __name__ == "__main__":
    main()
