"""Benchmark 3: footprint. What pivoice costs while it waits for the wake word, how fast it starts, and
what its imports cost, side by side with baselines measured in the same run:

  - listening: `python -m pivoice run` (the real daemon), the bare LiteRT loop on pyalsaaudio
    (bench/_engines.py listen: the same models, no asyncio, no threads) and `arecord` (capture alone,
    in C) all capture the same PulseAudio microphone at the same time; CPU (utime + stime of every
    thread, from /proc) and RSS over --seconds (default 60) of silence, then as long of speech
    (unrelated speech in noise at 10 dB SNR, no wake word);
  - start: from spawning the process to systemd's READY=1 (pivoice; a NOTIFY_SOCKET stands in for
    systemd) or to "READY" on stdout (bare loop: PCM open and models loaded), --starts times each;
    `python -c pass` is the interpreter's own floor;
  - imports: `python -X importtime -m pivoice run`: everything the daemon imports before READY=1, and
    after it until the Live client is made in the background, summed by top-level package.

    .venv/bin/python bench/footprint.py [--seconds 60] [--starts 5]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common as c
from harness import CARD_AUDIO, NotifySocket, SoundCard, daemon_env, die_with_parent, make_home

CONFIG = CARD_AUDIO + '[live]\nbase_url = "https://127.0.0.1:9"\n[log]\nlevel = "info"\n'  # no Live API here


class Proc:
    """A subprocess whose output lines are collected with the monotonic time they arrived."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path):
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, preexec_fn=die_with_parent)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_line(self, pattern: str, timeout: float = 60) -> float:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in self.lines:
                if rx.search(line):
                    return t
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.01)
        raise RuntimeError(f"no {pattern!r} from {self.proc.args}:\n" + "\n".join(x for _, x in self.lines[-30:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)


def parse_importtime(lines: list[str]) -> dict[str, float]:
    """Seconds per top-level package: -X importtime's self time of every module, by the package it is in."""
    out: dict[str, float] = {}
    for line in lines:
        # (pivoice logs what LiteRT prints to stderr while loading, importtime's lines included, at debug)
        m = re.search(r"import time:\s+(\d+) \|\s+\d+ \| +(\S+)", line)
        if m:
            top = m.group(2).split(".")[0]
            out[top] = out.get(top, 0.0) + int(m.group(1)) / 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each listening phase (default 60)")
    ap.add_argument("--starts", type=int, default=5, help="starts timed per program (default 5)")
    args = ap.parse_args()
    c.exit_on_sigterm()
    c.require("pulseaudio", "arecord", "sox")
    command = "bench/footprint.py " + " ".join(sys.argv[1:])
    started = time.monotonic()

    from test_wake import unrelated_speech_in_noise

    from pivoice.wake.openwakeword import builtin_models_dir

    tmp = Path(tempfile.mkdtemp(prefix="pivoice-bench-"))
    home = make_home(tmp / "home", files=tmp)
    cfg = tmp / "pivoice.toml"
    cfg.write_text(CONFIG)
    cfg_debug = tmp / "pivoice-debug.toml"
    cfg_debug.write_text(CONFIG.replace('level = "info"', 'level = "debug"'))
    env = daemon_env(home)
    py = c.venv_python()
    pivoice_cmd = [py, "-m", "pivoice", "run", "--config", str(cfg)]
    bare_cmd = [py, str(c.BENCH / "_engines.py"), "listen", "hey_jarvis", "pv_mic", str(builtin_models_dir())]
    path_cmd = [py, str(c.BENCH / "_engines.py"), "listen-pivoice", "hey_jarvis", "pv_mic", str(builtin_models_dir())]
    arecord_cmd = ["arecord", "-q", "-D", "pv_mic", "-f", "S16_LE", "-r", "16000", "-c", "1", "-t", "raw",
                   "--period-size=1280", "--buffer-size=5120", os.devnull]

    card = SoundCard(home).start()
    procs: list[Proc] = []
    try:
        # 1. Start: to READY.
        starts: dict[str, list[float]] = {"python -c pass": [], "bare LiteRT loop": [], "pivoice": []}
        for i in range(args.starts):
            print(f"start {i + 1}/{args.starts}", file=sys.stderr, flush=True)
            t = time.monotonic()
            subprocess.run([py, "-c", "pass"], env=env, check=True)
            starts["python -c pass"].append(time.monotonic() - t)
            p = Proc(bare_cmd, env, tmp)
            starts["bare LiteRT loop"].append(p.wait_line("^READY") - p.t0)
            p.stop()
            sock = NotifySocket(tmp / f"notify{i}.sock")
            p = Proc(pivoice_cmd, {**env, "NOTIFY_SOCKET": str(sock.path)}, tmp)
            deadline = time.monotonic() + 60
            while not sock.lines("READY=1") and time.monotonic() < deadline and p.proc.poll() is None:
                time.sleep(0.005)
            ready = [t for t, m in sock.messages if m == "READY=1"]
            if not ready:
                raise RuntimeError("pivoice sent no READY=1:\n" + "\n".join(x for _, x in p.lines[-30:]))
            starts["pivoice"].append(ready[0] - p.t0)
            p.stop()
            sock.close()

        # 2. Imports.
        print("import times", file=sys.stderr, flush=True)
        imports, later = [], []  # per run: {package: s} before READY=1, and after it (the Live client)
        for i in range(3):
            sock = NotifySocket(tmp / f"notify-imp{i}.sock")
            p = Proc([py, "-X", "importtime", "-m", "pivoice", "run", "--config", str(cfg_debug)],
                     {**env, "NOTIFY_SOCKET": str(sock.path)}, tmp)
            deadline = time.monotonic() + 60
            while not sock.lines("READY=1") and time.monotonic() < deadline and p.proc.poll() is None:
                time.sleep(0.01)
            ready_at = next((t for t, m in sock.messages if m == "READY=1"), time.monotonic())
            p.wait_line("Live API client ready", timeout=30)
            p.stop()
            sock.close()
            imports.append(parse_importtime([x for t, x in p.lines if t <= ready_at]))
            later.append(parse_importtime([x for t, x in p.lines if t > ready_at]))
        totals = [sum(d.values()) for d in imports]
        median_run = sorted(range(len(totals)), key=totals.__getitem__)[len(totals) // 2]
        imp, imp_later = imports[median_run], later[median_run]

        # 3. Listening, all three at once on the same microphone.
        print(f"listening: {args.seconds:.0f} s of silence, then {args.seconds:.0f} s of speech", file=sys.stderr,
              flush=True)
        daemon = Proc(pivoice_cmd, env, tmp)
        procs.append(daemon)
        daemon.wait_line("ready: listening")
        bare = Proc(bare_cmd, env, tmp)
        procs.append(bare)
        bare.wait_line("^READY")
        path = Proc(path_cmd, env, tmp)
        procs.append(path)
        path.wait_line("^READY")
        arec = Proc(arecord_cmd, env, tmp)
        procs.append(arec)
        listeners = {"pivoice daemon (python -m pivoice run)": daemon,
                     "pivoice Capture + WakeDetector.score": path,
                     "bare LiteRT loop (baseline)": bare, "arecord (capture only)": arec}
        time.sleep(5)  # settle
        speech = unrelated_speech_in_noise()[: int(args.seconds * 16000) * 2]
        phases: dict[str, dict[str, tuple[float, float, float]]] = {}
        for phase, audio in (("silence", b""), ("speech", speech)):
            card.say(audio)
            t0 = time.monotonic()
            cpu0 = {k: c.proc_cpu_seconds(p.proc.pid) for k, p in listeners.items()}
            rss: dict[str, list[float]] = {k: [] for k in listeners}
            while time.monotonic() - t0 < args.seconds:
                time.sleep(1.0)
                for k, p in listeners.items():
                    rss[k].append(c.proc_rss_mib(p.proc.pid))
            wall = time.monotonic() - t0
            phases[phase] = {k: ((c.proc_cpu_seconds(p.proc.pid) - cpu0[k]) / wall * 100, c.median(rss[k]),
                                 c.proc_rss_mib(p.proc.pid, "VmHWM")) for k, p in listeners.items()}
        heard = [x for _, x in daemon.lines if "heard '" in x]
        for p in procs:
            p.stop()
    finally:
        for p in procs:
            p.stop()
        card.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(c.header("Footprint", command))
    print("card     PulseAudio pipe-source microphone (16 kHz mono, fed in real time), ALSA pulse plugin; "
          "all four listeners capture it at the same time, period 1280 frames, buffer 5120")
    print()
    rows = []
    for k in listeners:
        s, sp = phases["silence"][k], phases["speech"][k]
        rows.append([k, f"{s[0]:.2f}%", f"{sp[0]:.2f}%", f"{s[1]:.1f}", f"{sp[1]:.1f}", f"{max(s[2], sp[2]):.1f}"])
    print(f"Listening ({args.seconds:.0f} s each; CPU as a share of one core, all threads; RSS in MiB, median of "
          f"1 s samples; peak = VmHWM)")
    print(c.table(rows, ["process", "CPU silence", "CPU speech", "RSS silence", "RSS speech", "peak RSS"]))
    if heard:
        print(f"  note: pivoice heard a wake word during the speech: {heard[0]}")
    print()
    rows = [[k, len(v), f"{c.median(v) * 1000:.0f}", f"{min(v) * 1000:.0f}", f"{max(v) * 1000:.0f}"]
            for k, v in starts.items()]
    print(f"Start to ready ({args.starts} starts each; ms): pivoice to READY=1 (capture and playback open, models "
          f"loaded); bare loop to READY (capture open, models loaded)")
    print(c.table(rows, ["program", "n", "median", "min", "max"]))
    print()
    def grouped(times: dict[str, float]) -> dict[str, float]:
        groups: dict[str, float] = {}
        for name, secs in times.items():
            key = "(standard library)" if name in sys.stdlib_module_names or name.startswith("_") else name
            groups[key] = groups.get(key, 0.0) + secs
        return groups

    before, after = grouped(imp), grouped(imp_later)
    ranked = sorted(before.keys() | after.keys(), key=lambda k: -(before.get(k, 0.0) + after.get(k, 0.0)))
    rows = [[k, f"{before.get(k, 0.0) * 1000:.0f}", f"{after.get(k, 0.0) * 1000:.0f}"] for k in ranked[:10]]
    if len(ranked) > 10:
        rest = ranked[10:]
        rows.append([f"{len(rest)} more packages", f"{sum(before.get(k, 0.0) for k in rest) * 1000:.0f}",
                     f"{sum(after.get(k, 0.0) for k in rest) * 1000:.0f}"])
    rows.append(["total", f"{sum(before.values()) * 1000:.0f}", f"{sum(after.values()) * 1000:.0f}"])
    print(f"Imports of `pivoice run` (python -X importtime: self time of every module, summed by top-level "
          f"package; ms): before READY=1, and after it (the Live client, made in a worker thread while pivoice "
          f"listens); the median of 3 runs by the import time before READY=1: "
          f"{', '.join(f'{t * 1000:.0f}' for t in sorted(totals))}")
    print(c.table(rows, ["package", "before READY=1", "after"]))
    print()
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
