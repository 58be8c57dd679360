"""Names pivoice's threads for the OS (`pv-capture`, `pv-playback`, ...), so `top -H`, `ps -L` and
/proc/PID/task/*/comm show which thread costs what: before Python 3.14 every thread carries the process's
name. bench/footprint.py reads them to break the listening daemon's CPU down by thread."""

from __future__ import annotations

import ctypes
import threading

PR_SET_NAME = 15


def name_this_thread() -> None:
    """Gives the calling thread its Python name, prefixed `pv-`, as its OS name (15 bytes at most)."""
    name = ("pv-" + threading.current_thread().name)[:15].encode()
    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the name is only a help
        pass
