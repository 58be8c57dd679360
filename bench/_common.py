"""Shared by the bench/ scripts: paths, the machine header, tables, statistics, process accounting.

The scripts reuse the test harness (tests/harness.py: the PulseAudio virtual sound card, the test PCMs and
environment, pivoice as a subprocess or in this process, the clips; tests/standin.py: the Live API
stand-in) instead of copying it.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TESTS = ROOT / "tests"
for p in (str(ROOT), str(TESTS)):
    if p not in sys.path:
        sys.path.insert(0, p)

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the header every table starts with ----------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):  # x86 / Raspberry Pi
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


def git_state() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--",
                                "pivoice"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes in pivoice/' if dirty else ''}"


def header(title: str, command: str) -> str:
    now = datetime.datetime.now().astimezone()
    load = os.getloadavg()
    versions = ", ".join(f"{d} {_version(d)}" for d in
                         ("pivoice", "ai-edge-litert", "numpy", "pyalsaaudio", "google-genai", "pyopen-wakeword"))
    lines = [
        f"== {title} ==",
        f"date     {now:%Y-%m-%d %H:%M %Z}",
        f"command  {command}",
        f"machine  {platform.machine()}, {os.cpu_count()} CPUs, {cpu_model()}, "
        f"kernel {platform.release()}, load average at start {load[0]:.2f}",
        f"python   {platform.python_version()}; {versions}",
        f"pivoice  git {git_state()}",
    ]
    return "\n".join(lines)


def table(rows: list[list[str]], head: list[str], align: str | None = None) -> str:
    """A plain-text table; `align` is one letter per column, l or r (default: first l, rest r)."""
    align = align or "l" + "r" * (len(head) - 1)
    cells = [head] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]

    def fmt(r):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align, strict=True)).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(head), sep] + [fmt(r) for r in cells[1:]])


# -- statistics -----------------------------------------------------------------------------------
def median(xs) -> float:
    return float(np.median(xs)) if len(xs) else float("nan")


def p95(xs) -> float:
    """95th percentile, numpy's default (linear interpolation between the two nearest samples)."""
    return float(np.percentile(xs, 95)) if len(xs) else float("nan")


# -- processes ------------------------------------------------------------------------------------
def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu_ns(pid: int) -> int:
    """Time on a CPU of every thread a process has now, in nanoseconds (the scheduler's own count: exact,
    where /proc/PID/stat's utime and stime come in clock ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except OSError:  # the thread ended
            continue
    return total


def proc_threads(pid: int) -> dict[int, tuple[str, float, int]]:
    """Each thread of a process: its OS name (pivoice names its own `pv-...`), CPU seconds, and context
    switches (each a wake-up: it slept, or was preempted)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            task = Path(f"/proc/{pid}/task/{tid}")
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            switches = sum(int(line.split()[1]) for line in (task / "status").read_text().splitlines()
                           if "ctxt_switches:" in line)
            out[int(tid)] = ((task / "comm").read_text().strip(), (int(fields[11]) + int(fields[12])) / CLK_TCK,
                             switches)
        except OSError:  # the thread ended
            continue
    return out


def proc_rss_mib(pid: int, key: str = "VmRSS") -> float:
    return proc_status_mib(pid, key)[0]


def proc_status_mib(pid: int, *keys: str) -> list[float]:
    """The fields `keys` of /proc/PID/status (VmRSS, RssAnon, VmHWM...) in MiB, NaN where absent."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in keys:
            found[name] = int(value.split()[0]) / 1024
    return [found.get(k, float("nan")) for k in keys]


class RssSampler:
    """The RSS of process `pid` and its anonymous part (RssAnon), sampled every `every` seconds in a
    thread: [(monotonic time, RSS MiB, RssAnon MiB)]."""

    def __init__(self, pid: int, every: float = 0.1):
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                rss, anon = proc_status_mib(self.pid, "VmRSS", "RssAnon")
            except OSError:  # it exited
                return
            if rss != rss or anon != anon:  # NaN: a zombie, no memory left to read
                return
            self.samples.append((time.monotonic(), rss, anon))

    def between(self, t0: float, t1: float, anon: bool = False) -> list[float]:
        return [a if anon else r for t, r, a in self.samples if t0 <= t < t1]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1)


def require(*programs: str) -> None:
    """Exit with a clear message when the test tools the benchmarks reuse are missing."""
    import importlib.util
    import shutil

    missing = [p for p in programs if shutil.which(p) is None]
    missing += [m for m in ("pytest", "trustme", "websockets") if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"missing: {', '.join(missing)}. The benchmarks reuse the test harness: run "
                 f"`bash scripts/setup.sh --dev` first, then run this with .venv/bin/python.")


def exit_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit, so the `finally` blocks that stop the virtual sound card and pivoice
    and remove the temporary files run (what the harness starts also dies with this process)."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def venv_python() -> str:
    """The project's venv interpreter (the one the README's setup makes), else this one."""
    p = ROOT / ".venv" / "bin" / "python"
    return str(p) if p.exists() else sys.executable
