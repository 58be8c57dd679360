"""What pivoice loads at start is kept out of the cycle collector's way.

CPython's cycle collector, when it runs a full (generation 2) collection, walks every object it tracks
while holding the GIL: every Python thread waits, the capture and playback threads included. After
start the daemon tracks about 90 000 objects (modules, numpy, pydantic, google-genai), almost none of
which ever become garbage; a full collection of them took 18-25 ms on an x86 test machine, several times
that on a Pi 3, where the speaker's buffer holds 80 ms. A full collection comes whenever the objects
created since the last one reach a quarter of those already there, so a long conversation triggers them.

`settle()` collects once, then freezes what is left (`gc.freeze()`): frozen objects are never walked
again, so a later full collection walks only what was made since. It runs once at READY=1 and once
more when google-genai has been imported (in a worker thread right after READY), each stage only once:
a frozen object is still freed when nothing refers to it any more, but one that becomes part of a
reference cycle never is (with all it refers to), so freezing again and again, over live conversations,
would leak.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

log = logging.getLogger("pivoice")

_done: set[str] = set()
_released = False
_lock = threading.Lock()


def settle(stage: str) -> None:
    """Collect, then freeze the heap as it is (once per `stage`, from any thread)."""
    with _lock:
        if stage in _done or _released:
            return
        _done.add(stage)
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
    log.debug("heap settled (%s) in %.0f ms: %d objects frozen", stage, (time.perf_counter() - started) * 1000,
              gc.get_freeze_count())


def release() -> None:
    """At stop: unfreeze, so that the interpreter's last collection frees everything at exit, and freeze
    nothing more (google-genai may still be loading in its worker thread)."""
    global _released
    with _lock:
        _released = True
        gc.unfreeze()


def forget() -> None:
    """Unfreeze and start over (for a process that runs the daemon more than once: tests)."""
    global _released
    with _lock:
        _done.clear()
        _released = False
        gc.unfreeze()
