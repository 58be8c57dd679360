"""Benchmark 3: footprint. What pivoice costs while it waits for the wake word, how fast it starts, and
what its imports cost, side by side with baselines measured in the same run:

  - listening: `python -m pivoice run` (the real daemon, 40 ms periods), pivoice's capture-to-detector
    path alone, the bare LiteRT loop on pyalsaaudio (bench/_engines.py listen: the same models, no asyncio,
    no threads; the baseline, reading 80 ms periods, and again reading 40 ms periods, what the shorter
    period costs by itself) and `arecord` (capture alone, in C) capture the same PulseAudio microphone, each
    alone, in --rounds rounds (default 3; the order reversed every other round); in each, --seconds
    (default 15) of silence, then as long of speech (unrelated speech in noise at 10 dB SNR, no wake word).
    CPU: the scheduler's time of every thread (/proc/PID/task/*/schedstat), the median round; the daemon's
    ratio to the baseline is the median of each round's ratio. (Run all at once, the five are woken by the
    same period on two cores and queue behind each other; whoever runs last finds its caches cold, and the
    ratios moved by 20% from run to run.) RSS: the median of 1 s samples;
  - start: from spawning the process to systemd's READY=1 (pivoice; a NOTIFY_SOCKET stands in for
    systemd) or to "READY" on stdout (bare loop: PCM open and models loaded), --starts times each;
    `python -c pass` is the interpreter's own floor;
  - imports: `python -X importtime -m pivoice run`: everything the daemon imports before READY=1, and
    after it until the Live client is made in the background, summed by top-level package;
  - memory by stage of the start: the daemon's RSS sampled every 5 ms while it starts, read at the log
    lines that mark each stage (config read, devices open, models loaded, READY=1, Live client made);
  - the listening daemon by thread: CPU and wake-ups (context switches) per second of each thread, by its
    OS name (pivoice names its own threads `pv-...`; `threaded-ml` is libpulse's, the ALSA pulse plugin's).

    .venv/bin/python bench/footprint.py [--seconds 15] [--rounds 3] [--starts 5] [--input-period-ms 80]
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

PHASES = ("silence", "speech")
SETTLE_SECONDS = 3.0  # after a listener is ready, before its CPU is counted
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


STAGES = [  # (stage, what marks its end: a line of the daemon's log, READY=1's arrival, or the last sample)
    ("interpreter, imports, config", r"INFO pivoice: pivoice .*config"),
    ("capture device open", r"capture device \S+: "),
    ("playback device open", r"playback device \S+: "),
    ("wake-word models loaded", r"wake word models loaded"),
    ("READY=1", "READY=1"),
    ("Live client made (google-genai)", r"Live API client ready"),
    ("listening, 5 s later", "last sample"),
]


def rss_by_stage(proc_class, cmd: list[str], env: dict[str, str], tmp: Path) -> list[tuple[str, float, float]]:
    """(stage, seconds from spawn, RSS in MiB then) for one start of the daemon (debug log); a stage not
    reached within 60 s is a RuntimeError with the end of the log."""
    sock = NotifySocket(tmp / "notify-rss.sock")
    p = proc_class(cmd, {**env, "NOTIFY_SOCKET": str(sock.path)}, tmp)
    samples: list[tuple[float, float]] = []
    try:
        deadline = time.monotonic() + 60
        client_at = None
        while time.monotonic() < deadline and p.proc.poll() is None:
            try:
                samples.append((time.monotonic(), c.proc_rss_mib(p.proc.pid)))
            except OSError:
                break
            if client_at is None and any("Live API client ready" in x for _, x in p.lines):
                client_at = time.monotonic()
            if client_at is not None and time.monotonic() > client_at + 5:
                break
            time.sleep(0.005)
        ready_at = next((t for t, m in sock.messages if m == "READY=1"), None)
    finally:
        p.stop()
        sock.close()
    out = []
    for name, pattern in STAGES:
        if pattern == "READY=1":
            at = ready_at
        elif pattern == "last sample":
            at = samples[-1][0] if client_at is not None else None
        else:
            at = next((t for t, x in p.lines if re.search(pattern, x)), None)
        before = [r for t, r in samples if at is not None and t <= at]
        if not before:
            raise RuntimeError(f"the daemon did not reach '{name}':\n" + "\n".join(x for _, x in p.lines[-30:]))
        out.append((name, at - p.t0, before[-1]))
    return out


def per_thread(before: dict, after: dict) -> dict[str, tuple[float, int]]:
    """Thread name -> (CPU seconds, context switches) between two c.proc_threads() snapshots; threads sharing
    a name are summed (libpulse's, one per open PCM); a thread that started or ended in between is left out
    (none does while pivoice listens)."""
    out: dict[str, tuple[float, int]] = {}
    for tid, (name, secs, switches) in after.items():
        if tid in before:
            old = out.get(name, (0.0, 0))
            out[name] = (old[0] + secs - before[tid][1], old[1] + switches - before[tid][2])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each listening phase (default 15)")
    ap.add_argument("--starts", type=int, default=5, help="starts timed per program (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="listening rounds per listener (default 3)")
    ap.add_argument("--input-period-ms", type=int, default=None,
                    help="the daemon's audio.input_period_ms (default: pivoice's own, 40)")
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
    config = CONFIG if args.input_period_ms is None else CONFIG.replace(
        "[audio]\n", f"[audio]\ninput_period_ms = {args.input_period_ms}\n")
    cfg.write_text(config)
    cfg_debug = tmp / "pivoice-debug.toml"
    cfg_debug.write_text(config.replace('level = "info"', 'level = "debug"'))
    env = daemon_env(home)
    py = c.venv_python()
    pivoice_cmd = [py, "-m", "pivoice", "run", "--config", str(cfg)]
    bare_cmd = [py, str(c.BENCH / "_engines.py"), "listen", "hey_jarvis", "pv_mic", str(builtin_models_dir())]
    bare40_cmd = [py, str(c.BENCH / "_engines.py"), "listen-40ms", "hey_jarvis", "pv_mic", str(builtin_models_dir())]
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

        # 3. Memory by stage of the start.
        print("memory by stage", file=sys.stderr, flush=True)
        stages = rss_by_stage(Proc, [py, "-m", "pivoice", "run", "--config", str(cfg_debug)], env, tmp)

        # 4. Listening: each listener alone on the microphone (five at once, woken by the same period on
        # two cores, queue behind each other: whoever runs last finds its caches cold), in rounds, the order
        # reversed every other round; in each, --seconds of silence, then as long of speech.
        speech = unrelated_speech_in_noise()[: int(args.seconds * 16000) * 2]
        listeners: dict[str, tuple[list[str], str | None]] = {
                     "pivoice daemon (python -m pivoice run)": (pivoice_cmd, "ready: listening"),
                     "pivoice Capture + WakeDetector.score": (path_cmd, "^READY"),
                     "bare LiteRT loop (baseline)": (bare_cmd, "^READY"),
                     "bare LiteRT loop, 40 ms periods": (bare40_cmd, "^READY"),
                     "arecord (capture only)": (arecord_cmd, None)}
        daemon_k = "pivoice daemon (python -m pivoice run)"
        cpu: dict[str, dict[str, list[float]]] = {ph: {k: [] for k in listeners} for ph in PHASES}
        rss: dict[str, dict[str, list[float]]] = {ph: {k: [] for k in listeners} for ph in PHASES}
        anon: dict[str, list[float]] = {k: [] for k in listeners}  # RssAnon, in silence
        hwm: dict[str, float] = dict.fromkeys(listeners, 0.0)
        threads: dict[str, dict[str, list[float]]] = {ph: {} for ph in PHASES}  # name -> [CPU s, switches, s]
        heard: list[str] = []
        for r in range(args.rounds):
            for k in (list(listeners) if r % 2 == 0 else list(reversed(listeners))):
                print(f"listening: round {r + 1}/{args.rounds}, {k}", file=sys.stderr, flush=True)
                argv, ready_line = listeners[k]
                p = Proc(argv, env, tmp)
                procs.append(p)
                if ready_line:
                    p.wait_line(ready_line)
                time.sleep(SETTLE_SECONDS)  # the daemon makes its Live client after READY=1 (section 2)
                for phase in PHASES:
                    card.say(speech if phase == "speech" else b"")
                    t0, cpu0 = time.monotonic(), c.proc_cpu_ns(p.proc.pid)
                    tasks0 = c.proc_threads(p.proc.pid)
                    while time.monotonic() - t0 < args.seconds:
                        time.sleep(1.0)
                        resident, anonymous = c.proc_status_mib(p.proc.pid, "VmRSS", "RssAnon")
                        rss[phase][k].append(resident)
                        if phase == "silence":
                            anon[k].append(anonymous)
                    wall = time.monotonic() - t0
                    cpu[phase][k].append((c.proc_cpu_ns(p.proc.pid) - cpu0) / 1e9 / wall * 100)
                    if k == daemon_k:
                        for name, (secs, switches) in per_thread(tasks0, c.proc_threads(p.proc.pid)).items():
                            acc = threads[phase].setdefault(name, [0.0, 0.0, 0.0])
                            acc[0] += secs
                            acc[1] += switches
                            acc[2] += wall
                hwm[k] = max(hwm[k], c.proc_rss_mib(p.proc.pid, "VmHWM"))
                heard += [x for _, x in p.lines if "heard '" in x] if k == daemon_k else []
                p.stop()
                procs.remove(p)
    finally:
        for p in procs:
            p.stop()
        card.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(c.header("Footprint", command))
    ours = "640 frames (pivoice, the 40 ms bare loop)" if args.input_period_ms is None else \
        f"{args.input_period_ms * 16} frames (pivoice: audio.input_period_ms = {args.input_period_ms}), 640 (the 40 ms bare loop)"
    print("card     PulseAudio pipe-source microphone (16 kHz mono, fed in real time), ALSA pulse plugin; each "
          f"listener captures it alone, buffer 5120 frames, periods of {ours} or 1280 (the baseline, arecord)")
    print()
    rows = []
    for k in listeners:
        rows.append([k, *(f"{c.median(cpu[ph][k]):.2f}%" for ph in PHASES),
                     *(f"{c.median(rss[ph][k]):.1f}" for ph in PHASES), f"{hwm[k]:.1f}", f"{c.median(anon[k]):.1f}"])
    print(f"Listening ({args.rounds} rounds of {args.seconds:.0f} s of silence, then as long of speech, each "
          f"listener alone; CPU: the median round, as a share of one core, all threads, from schedstat; RSS in "
          f"MiB, the median of 1 s samples; peak = VmHWM; anon: RssAnon in silence, the process's own memory: the rest "
          f"of RSS is pages of the libraries and model files it maps, whose number follows the machine's page "
          f"cache from run to run)")
    print(c.table(rows, ["process", "CPU silence", "CPU speech", "RSS silence", "RSS speech", "peak RSS", "anon"]))
    if heard:
        print(f"  note: pivoice heard a wake word during the speech: {heard[0]}")
    bare_k = "bare LiteRT loop (baseline)"
    for phase in PHASES:
        ratios = [d / b for d, b in zip(cpu[phase][daemon_k], cpu[phase][bare_k], strict=True)]
        ratio = c.median(ratios)
        print(f"target (issue 14): daemon CPU <= 1.10 x the bare loop, {phase}: {ratio:.2f} (the median of the "
              f"rounds: {', '.join(f'{x:.2f}' for x in ratios)}): {'met' if ratio <= 1.10 else 'not met'}")
    listening = max(c.median(rss[ph][daemon_k]) for ph in PHASES)
    print(f"target (issue 14): RSS while listening <= 90 MiB: {listening:.1f}: "
          f"{'met' if listening <= 90 else 'not met'}")
    print()
    names = sorted(threads["silence"].keys() | threads["speech"].keys(),
                   key=lambda n: -threads["silence"].get(n, [0.0, 0.0, 1.0])[0])
    rows = [[n, *(f"{t[0] / t[2] * 100:.2f}%" for t in (threads[ph].get(n, [0.0, 0.0, 1.0]) for ph in PHASES)),
             *(f"{t[1] / t[2]:.1f}" for t in (threads[ph].get(n, [0.0, 0.0, 1.0]) for ph in PHASES))] for n in names]
    print("The pivoice daemon by thread (CPU as a share of one core; wake-ups: context switches per second; all "
          "rounds)")
    print(c.table(rows, ["thread", "CPU silence", "CPU speech", "wake-ups/s silence", "wake-ups/s speech"]))
    print()
    rows = [[name, f"{at * 1000:.0f}", f"{rss:.1f}", f"{rss - prev:+.1f}"]
            for (name, at, rss), (_, _, prev) in zip(stages, [("", 0.0, 0.0), *stages[:-1]], strict=True)]
    print("Memory by stage of the start (RSS sampled every 5 ms, read when the stage's log line arrived; MiB)")
    print(c.table(rows, ["stage", "at ms", "RSS", "added"]))
    print()
    rows = [[k, len(v), f"{c.median(v) * 1000:.0f}", f"{min(v) * 1000:.0f}", f"{max(v) * 1000:.0f}"]
            for k, v in starts.items()]
    print(f"Start to ready ({args.starts} starts each; ms): pivoice to READY=1 (capture and playback open, models "
          f"loaded); bare loop to READY (capture open, models loaded)")
    print(c.table(rows, ["program", "n", "median", "min", "max"]))
    ours, bare_start = c.median(starts["pivoice"]) * 1000, c.median(starts["bare LiteRT loop"]) * 1000
    print(f"target (issue 14): start to READY=1 <= 500 ms median: {ours:.0f}: {'met' if ours <= 500 else 'not met'}; "
          f"<= 200 ms over the bare loop: {ours - bare_start:+.0f}: {'met' if ours - bare_start <= 200 else 'not met'}")
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
