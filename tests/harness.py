"""The test harness: real components on a machine without a sound card, GPIO or Gemini endpoint, shared by
the tests (tests/conftest.py's fixtures are built on it) and the benchmarks (bench/), which import it.

- ALSA: a private $HOME whose .asoundrc defines the test PCMs (make_home): file-plugin ones, unpaced, and
  pulse-plugin ones on a PulseAudio daemon started here as a virtual sound card (SoundCard, paced in real
  time; SpeakerRecorder records its speaker). See docs/testing.md.
- pivoice itself runs as a subprocess (`python -m pivoice run`, Daemon), as systemd would run it, in
  daemon_env's environment; or in this process (InProcessDaemon) where gpiozero's mock pins are driven.
- The Live API is tests/standin.py, a TLS WebSocket server, reached by the real google-genai client.

Every process started here dies with the process that started it (die_with_parent).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np

CLIPS = Path(__file__).parent / "clips"
ROOT = Path(__file__).parent.parent
TEST_KEY = "AIzaTEST-distinctive-key-9f3b2c7d1e"  # never a real key; searched for in every log

def die_with_parent() -> None:
    """preexec_fn for every process the harness starts: the kernel kills it when the test (or benchmark)
    process dies, however it dies (a crash, SIGKILL, a CI time-out), so no sound server or daemon outlives
    a test run."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def read_wav(name: str) -> bytes:
    with wave.open(str(CLIPS / name)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        return w.readframes(w.getnframes())


def silence(seconds: float, rate: int = 16000) -> bytes:
    return b"\0\0" * int(seconds * rate)


def tone(seconds: float, freq: float = 440.0, rate: int = 24000, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * level * 32767).astype("<i2").tobytes()


def aligned_correlation(expected: np.ndarray, got: np.ndarray) -> float:
    """The correlation coefficient of `got` with `expected` where they overlap, `got` shifted to where it
    matches best (found by cross-correlation of the two signals)."""
    return alignment(expected, got)[0]


def alignment(expected: np.ndarray, got: np.ndarray) -> tuple[float, int]:
    """(correlation where they overlap, lag): `got[i]` lines up best with `expected[i + lag]`."""
    a, b = expected.astype(np.float64), got.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(a.size + b.size)))
    xc = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    lag = int(np.argmax(xc))
    lag = lag - n if lag > n // 2 else lag
    start, end = max(0, -lag), min(b.size, a.size - lag)
    if end - start < 100:
        return 0.0, lag
    return float(np.corrcoef(a[start + lag : end + lag], b[start:end])[0, 1]), lag


def decode_flac(name: str) -> bytes:
    return subprocess.run(["sox", str(CLIPS / name), "-t", "raw", "-r", "16000", "-c", "1", "-b", "16",
                           "-e", "signed-integer", "-"], check=True, capture_output=True).stdout


# ---------------------------------------------------------------------------------------------------
# ALSA and PulseAudio

CARD_AUDIO = '[audio]\ninput_device = "pv_mic"\noutput_device = "pv_spk"\n'  # pivoice.toml: SoundCard's PCMs


def make_home(home: Path, files: Path | None = None) -> Path:
    """A private HOME (and XDG_RUNTIME_DIR) whose .asoundrc defines the test PCMs: pv_mic and pv_spk, the
    microphone and speaker of the SoundCard started in it, and pv_mixer, its mixer (a real ALSA control,
    "Master", that is the speaker sink's volume); mic_file and spk_file, the file plugin
    (unpaced), reading `files`/mic.raw and writing `files`/speaker.raw (`files` defaults to `home`), in
    whatever format they are opened with; pv_mic_stereo_only, pv_mic as a device that only runs with two
    channels (as many HATs do): asked for one, it hands back two; pv_mic_no_format, one that refuses every
    format (it needs an access pv_mic does not offer)."""
    files = files or home
    home.mkdir(parents=True, exist_ok=True)
    (home / ".asoundrc").write_text(f"""
pcm.pv_mic {{ type pulse  device "mic_feed" }}
pcm.pv_spk {{ type pulse  device "speaker" }}
ctl.pv_mixer {{ type pulse  device "speaker" }}
pcm.spk_file {{ type file  slave.pcm "null"  file "{files}/speaker.raw"  format "raw" }}
pcm.mic_file {{ type file  slave.pcm "null"  file "/dev/null"  infile "{files}/mic.raw"  format "raw" }}
pcm.pv_mic_no_format {{ type multi  slaves.a {{ pcm "pv_mic"  channels 2 }}
  bindings {{ 0 {{ slave a  channel 0 }}  1 {{ slave a  channel 1 }} }} }}
pcm.pv_mic_mmap {{ type mmap_emul  slave.pcm "pv_mic" }}
pcm.pv_mic_stereo_only {{ type multi  slaves.a {{ pcm "pv_mic_mmap"  channels 2 }}
  bindings {{ 0 {{ slave a  channel 0 }}  1 {{ slave a  channel 1 }} }} }}
""")
    return home


class SoundCard:
    """A PulseAudio daemon as a virtual sound card: a pipe source as the microphone, a null sink as the
    speaker. The microphone is fed in real time by a thread (20 ms at a time, silence between clips)."""

    CHUNK = 640  # 20 ms at 16 kHz s16

    def __init__(self, runtime: Path):
        self.runtime = runtime
        self.fifo = runtime / "mic.fifo"
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None
        self.fed_samples = 0  # samples taken for the microphone so far, clips and silence
        self.writes: list[tuple[float, float]] = []  # (monotonic, wall) time each 20 ms chunk went in
        self._echo = None
        self.fed = bytearray()  # everything the microphone heard

    def start(self) -> SoundCard:
        env = {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime), "HOME": str(self.runtime)}
        # Not daemonized: a child of this process that dies with it, even when the interpreter crashes.
        self._daemon = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
             "--log-target=file:" + str(self.runtime / "pulse.log"),
             "--load=module-native-protocol-unix",
             f"--load=module-pipe-source source_name=mic_feed file={self.fifo} format=s16le rate=16000 channels=1",
             "--load=module-null-sink sink_name=speaker rate=24000 channels=1"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=die_with_parent,
        )
        # Ready once its socket answers and both devices are loaded (the socket comes first).
        deadline = time.monotonic() + 20
        while not self._ready():
            if self._daemon.poll() is not None or time.monotonic() > deadline:
                log = self.runtime / "pulse.log"
                raise RuntimeError(f"pulseaudio did not start: {log.read_text() if log.exists() else ''}")
            time.sleep(0.05)
        self._fifo = open(self.fifo, "wb", buffering=0)  # noqa: SIM115 - open for the card's life; stop() closes it
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()
        return self

    def _feed(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                chunk = bytes(self._pending[: self.CHUNK])
                del self._pending[: self.CHUNK]
                self.fed_samples += self.CHUNK // 2
            chunk += b"\0" * (self.CHUNK - len(chunk))
            if self._echo is not None:
                chunk = self._add_echo(chunk)
            try:
                self._fifo.write(chunk)
            except OSError:
                return
            self.writes.append((time.monotonic(), time.time()))
            self.fed += chunk
            next_t += 0.02
            time.sleep(max(0.0, next_t - time.monotonic()))

    def feed_back(self, rec: SpeakerRecorder, gain: float, delay: float, noise_rms: float) -> None:
        """From now on the microphone also hears the speaker, as a mic next to it would: what the speaker
        played (as recorded from its monitor), `delay` s later (on top of the monitor's own latency),
        scaled by `gain`, plus white room noise of `noise_rms`."""
        import soxr

        self._echo = {"rec": rec, "gain": gain, "delay": int(delay * 24000), "noise": noise_rms,
                      "rng": np.random.default_rng(3), "pos": None, "late": 0, "buf": np.zeros(0, np.float32),
                      "rs": soxr.ResampleStream(24000, 16000, 1, dtype="float32")}

    def _add_echo(self, chunk: bytes) -> bytes:
        """The echo is a fixed delay behind the speaker: each 20 ms chunk takes the next 20 ms of the
        recording, waiting a little for parec when it is late rather than slipping (a slip would be an
        echo path that jumps, which no room does)."""
        e = self._echo
        if e["pos"] is None:
            e["pos"] = max(0, len(e["rec"].data) // 2 - e["delay"])
        deadline = time.monotonic() + 0.04
        while len(e["rec"].data) // 2 < e["pos"] + 480 and time.monotonic() < deadline:
            time.sleep(0.002)
        take = max(0, min(480, len(e["rec"].data) // 2 - e["pos"]))
        if take < 480:
            e["late"] += 1
        seg = np.frombuffer(bytes(e["rec"].data[e["pos"] * 2 : (e["pos"] + take) * 2]), "<i2").astype(np.float32)
        e["pos"] += 480
        seg = np.concatenate([seg, np.zeros(480 - take, np.float32)])
        e["buf"] = np.concatenate([e["buf"], e["rs"].resample_chunk(seg)])
        n = self.CHUNK // 2
        echo, e["buf"] = e["buf"][:n], e["buf"][n:]
        echo = np.concatenate([echo, np.zeros(n - echo.size, np.float32)])
        x = np.frombuffer(chunk, "<i2").astype(np.float32) + e["gain"] * echo + e["rng"].normal(0, e["noise"], n)
        return np.clip(x, -32768, 32767).astype("<i2").tobytes()

    def _ready(self) -> bool:
        if not (self.runtime / "pulse" / "native").exists():
            return False
        try:
            return "mic_feed" in self._pactl("list", "short", "sources") and \
                "speaker" in self._pactl("list", "short", "sinks")
        except subprocess.SubprocessError:
            return False

    def _pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], env={**os.environ, "XDG_RUNTIME_DIR": str(self.runtime)},
                              capture_output=True, text=True, check=True, timeout=10).stdout

    def hang_mic(self, hung: bool = True) -> None:
        """The microphone stops delivering audio (a hung or vanished device) / delivers again.

        (Unloading the source would not do: PulseAudio moves its streams to another source.)"""
        self._pactl("suspend-source", "mic_feed", "1" if hung else "0")

    def hang_speaker(self, hung: bool = True) -> None:
        """The speaker stops taking audio (a hung sound card: writes to it make no progress) / takes it again."""
        self._pactl("suspend-sink", "speaker", "1" if hung else "0")

    def say(self, pcm: bytes) -> float:
        """Queue 16 kHz audio for the microphone; returns how long until it has all been heard (s)."""
        with self._lock:
            self._pending += pcm
            return len(self._pending) / 32000

    def say_and_wait(self, pcm: bytes) -> None:
        time.sleep(self.say(pcm) + 0.05)

    def say_at(self, pcm: bytes) -> int:
        """Queue 16 kHz audio for the microphone; returns the microphone's sample index where it starts."""
        with self._lock:
            start = self.fed_samples + len(self._pending) // 2
            self._pending += pcm
        return start

    def written(self, sample: int) -> tuple[float, float] | None:
        """(monotonic, wall) time at which microphone sample `sample` went into the pipe; None: not yet."""
        k = sample // (self.CHUNK // 2)  # the k-th chunk holds samples k*320 .. k*320+319
        return self.writes[k] if k < len(self.writes) else None

    def record_speaker(self, path: Path) -> subprocess.Popen:
        return subprocess.Popen(
            ["parec", "--device=speaker.monitor", "--rate=24000", "--channels=1", "--format=s16le",
             "--latency-msec=10", "--raw"],
            stdout=subprocess.PIPE, env={**os.environ, "XDG_RUNTIME_DIR": str(self.runtime)},
            preexec_fn=die_with_parent,
        )

    def stop(self) -> None:
        self._stop.set()
        if self._feeder:
            self._feeder.join(2)
        try:
            self._fifo.close()
        except OSError:
            pass
        self._daemon.terminate()
        try:
            self._daemon.wait(5)
        except subprocess.TimeoutExpired:
            self._daemon.kill()
            self._daemon.wait()


# ---------------------------------------------------------------------------------------------------
# The daemon

# What pivoice would otherwise take from the environment it is started in: a test sets what it tests.
OUTSIDE_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "NOTIFY_SOCKET", "JOURNAL_STREAM",
                "INVOCATION_ID", "CREDENTIALS_DIRECTORY", "WATCHDOG_USEC")


def in_process_env(home: Path) -> dict[str, str]:
    """What this process's environment needs for ALSA to open make_home's PCMs in-process: HOME and
    XDG_RUNTIME_DIR at `home`, and ALSA_CONFIG_PATH naming its .asoundrc. alsa-lib reads its configuration
    once per process and re-reads it only when the list of top-level files (ALSA_CONFIG_PATH) or their
    times change, not when HOME does: without it, a test in a process where an earlier test opened a PCM
    gets the earlier test's definitions (files already deleted, a sound server already stopped)."""
    top = Path(os.environ.get("ALSA_CONFIG_DIR", "/usr/share/alsa")) / "alsa.conf"
    return {"HOME": str(home), "XDG_RUNTIME_DIR": str(home), "ALSA_CONFIG_PATH": f"{top}:{home / '.asoundrc'}"}


def daemon_env(home: Path, key: str | None = TEST_KEY) -> dict[str, str]:
    """The environment pivoice runs in: this process's without OUTSIDE_VARS, HOME and XDG_RUNTIME_DIR at
    `home` (make_home's .asoundrc, the SoundCard's socket), pivoice from this checkout, `key` as the API key."""
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS}
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(home), PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    if key is not None:
        env["GEMINI_API_KEY"] = key
    return env


class Daemon:
    """`python -m pivoice run` as a subprocess, its stderr collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, wrap: list[str] | None = None):
        self.proc = subprocess.Popen([*(wrap or []), sys.executable, "-m", "pivoice", *args], env=env, cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     preexec_fn=die_with_parent)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                m = rx.search(line)
                if m:
                    return m
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r} within {timeout} s. Log:\n{self.output}")

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
        return sum(1 for line in self.lines if rx.search(line))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Signal it; returns (exit code, seconds it took to exit)."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(2)
        return code, time.monotonic() - t0

    def wait_exit(self, timeout: float = 20.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(2)
        return code


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET; records (time, message)."""

    def __init__(self, path: Path):
        import socket

        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def lines(self, prefix: str = "") -> list[str]:
        return [m for _, m in self.messages if m.startswith(prefix)]

    def wait_last(self, prefix: str, expected: str, timeout: float = 5.0) -> None:
        """Until the newest message starting with `prefix` is `expected`. (A datagram sent at the moment
        pivoice logs a change reaches this socket's reading thread a little later than the log line.)"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.lines(prefix)
            if got and got[-1] == expected:
                return
            time.sleep(0.02)
        raise AssertionError(f"the newest {prefix!r} message is {(self.lines(prefix) or [None])[-1]!r}, not "
                             f"{expected!r}, after {timeout} s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


class SpeakerRecorder:
    """parec on the null sink's monitor, read as it comes, each chunk stamped with its arrival time."""

    def __init__(self, card: SoundCard, tmp_path: Path, level: int = 2000):
        self.proc = card.record_speaker(tmp_path / "speaker-rec.raw")
        self.level = level
        self.data = bytearray()
        self.stamps: list[tuple[float, int]] = []  # (time.monotonic(), samples received by then)
        self.listeners: list = []  # called with (self) after each chunk
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            chunk = self.proc.stdout.read1(4800)
            if not chunk:
                return
            self.data.extend(chunk)
            self.stamps.append((time.monotonic(), len(self.data) // 2))
            for fn in list(self.listeners):
                fn(self)

    @property
    def samples(self) -> np.ndarray:
        return np.frombuffer(bytes(self.data[: len(self.data) // 2 * 2]), "<i2")

    def position_at(self, t: float) -> int:
        """How many samples had arrived at time `t` (the recording position of that moment)."""
        pos = 0
        for when, n in self.stamps:
            if when > t:
                break
            pos = n
        return pos

    def loud_after(self, t: float) -> float:
        """Milliseconds of loud audio recorded after moment `t` (from there to the last loud sample)."""
        loud = np.flatnonzero(np.abs(self.samples) > self.level)
        if loud.size == 0:
            return 0.0
        return max(0.0, (loud[-1] - self.position_at(t)) / 24)

    def loud_span(self) -> float:
        """Seconds from the first loud sample to the last."""
        loud = np.flatnonzero(np.abs(self.samples) > self.level)
        return (loud[-1] - loud[0]) / 24000 if loud.size else 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self._thread.join(3)


class InProcessDaemon:
    """pivoice's real daemon (pivoice.daemon.build) on an event loop in a thread of the test process, so
    a test can drive gpiozero's mock pins. Devices, models and the Live client are the real ones."""

    def __init__(self, config_text: str):
        import tomllib

        from pivoice import configfile
        from pivoice.credentials import ApiKey
        from pivoice.daemon import build

        self.settings = configfile.parse(tomllib.loads(config_text), "test")
        self.daemon = build(self.settings, ApiKey(TEST_KEY, "test"))
        self.assistant = self.daemon.assistant
        self.transitions: list[tuple[float, object]] = []
        self.assistant.listeners.append(lambda t: self.transitions.append((time.monotonic(), t)))
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import asyncio

        try:
            asyncio.run(self.daemon.run(signals=False))
        except BaseException as e:
            self.error = e

    def events(self) -> list[str]:
        return [t.event.value for _, t in self.transitions]

    def when(self, event: str, after: float = 0.0) -> float:
        return next(at for at, t in self.transitions if t.event.value == event and at >= after)

    def wait_event(self, event: str, timeout: float = 15.0, after: float = 0.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error:
                raise self.error
            for at, t in self.transitions:
                if t.event.value == event and at >= after:
                    return at
            time.sleep(0.01)
        raise AssertionError(f"no {event!r} within {timeout} s; events so far: {self.events()}")

    def wait_state(self, state: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.assistant.state.value != state and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.assistant.state.value == state, f"state {self.assistant.state.value}, events {self.events()}"

    def stop(self) -> None:
        self.assistant.stop()
        self._thread.join(5)
        assert not self._thread.is_alive(), "the daemon did not stop"
        if self.error:
            raise self.error
