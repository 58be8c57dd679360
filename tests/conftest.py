"""Test harness: real components on a machine without a sound card, GPIO or Gemini endpoint.

- ALSA: a private $HOME with an .asoundrc defining the test PCMs (file plugin: unpaced; pulse plugin to a
  PulseAudio daemon started here: paced in real time). See ../shared/TESTING.md.
- The Live API: tests/standin.py, a TLS WebSocket server, reached by the real google-genai client.
- pivoice itself runs as a subprocess (`python -m pivoice run`), as systemd would run it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from standin import LiveStandIn

CLIPS = Path(__file__).parent / "clips"
ROOT = Path(__file__).parent.parent
TEST_KEY = "AIzaTEST-distinctive-key-9f3b2c7d1e"  # never a real key; searched for in every log


def read_wav(name: str) -> bytes:
    with wave.open(str(CLIPS / name)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        return w.readframes(w.getnframes())


def silence(seconds: float, rate: int = 16000) -> bytes:
    return b"\0\0" * int(seconds * rate)


def tone(seconds: float, freq: float = 440.0, rate: int = 24000, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * level * 32767).astype("<i2").tobytes()


def decode_flac(name: str) -> bytes:
    return subprocess.run(["sox", str(CLIPS / name), "-t", "raw", "-r", "16000", "-c", "1", "-b", "16",
                           "-e", "signed-integer", "-"], check=True, capture_output=True).stdout


# ---------------------------------------------------------------------------------------------------
# ALSA and PulseAudio


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
        self.fed_samples = 0  # samples written so far, clips and silence

    def start(self) -> SoundCard:
        env = {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime), "HOME": str(self.runtime)}
        subprocess.run(
            ["pulseaudio", "-n", "--daemonize=yes", "--exit-idle-time=-1", "--disallow-exit",
             "--log-target=file:" + str(self.runtime / "pulse.log"),
             "--load=module-native-protocol-unix",
             f"--load=module-pipe-source source_name=mic_feed file={self.fifo} format=s16le rate=16000 channels=1",
             "--load=module-null-sink sink_name=speaker rate=24000 channels=1"],
            env=env, check=True, timeout=20,
        )
        deadline = time.monotonic() + 10
        while not (self.runtime / "pulse" / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._fifo = open(self.fifo, "wb", buffering=0)
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()
        return self

    def _feed(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                chunk = bytes(self._pending[: self.CHUNK])
                del self._pending[: self.CHUNK]
            chunk += b"\0" * (self.CHUNK - len(chunk))
            try:
                self._fifo.write(chunk)
            except OSError:
                return
            self.fed_samples += self.CHUNK // 2
            next_t += 0.02
            time.sleep(max(0.0, next_t - time.monotonic()))

    def say(self, pcm: bytes) -> float:
        """Queue 16 kHz audio for the microphone; returns how long until it has all been heard (s)."""
        with self._lock:
            self._pending += pcm
            return len(self._pending) / 32000

    def say_and_wait(self, pcm: bytes) -> None:
        time.sleep(self.say(pcm) + 0.05)

    def record_speaker(self, path: Path) -> subprocess.Popen:
        return subprocess.Popen(
            ["parec", "--device=speaker.monitor", "--rate=24000", "--channels=1", "--format=s16le",
             "--latency-msec=10", "--raw"],
            stdout=subprocess.PIPE, env={**os.environ, "XDG_RUNTIME_DIR": str(self.runtime)},
        )

    def stop(self) -> None:
        self._stop.set()
        if self._feeder:
            self._feeder.join(2)
        try:
            self._fifo.close()
        except OSError:
            pass
        pid_file = self.runtime / "pulse" / "pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass


@pytest.fixture
def home(tmp_path) -> Path:
    """A private HOME whose .asoundrc defines the test PCMs."""
    h = tmp_path / "home"
    h.mkdir()
    (h / ".asoundrc").write_text(f"""
pcm.pv_mic {{ type pulse  device "mic_feed" }}
pcm.pv_spk {{ type pulse  device "speaker" }}
pcm.spk_file {{ type file  slave.pcm "null"  file "{tmp_path}/speaker.raw"  format "raw" }}
pcm.mic_file {{ type file  slave.pcm "null"  file "/dev/null"  infile "{tmp_path}/mic.raw"  format "raw" }}
""")
    return h


@pytest.fixture
def soundcard(home):
    if not shutil.which("pulseaudio"):
        pytest.fail("pulseaudio is not installed: run .ci/run's apt step (see README)")
    card = SoundCard(home).start()
    yield card
    card.stop()


@pytest.fixture
def standin(tmp_path):
    s = LiveStandIn(tmp_path).start()
    yield s
    s.stop()


# ---------------------------------------------------------------------------------------------------
# The daemon


class Daemon:
    """`python -m pivoice run` as a subprocess, its stderr collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, wrap: list[str] | None = None):
        self.proc = subprocess.Popen([*(wrap or []), sys.executable, "-m", "pivoice", *args], env=env, cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


@pytest.fixture
def run_daemon(tmp_path, home):
    started: list[Daemon] = []

    def start(config: str | None, *, extra_env: dict[str, str] | None = None, key: str | None = TEST_KEY,
              args: list[str] | None = None, wrap: list[str] | None = None) -> Daemon:
        env = {k: v for k, v in os.environ.items()
               if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "NOTIFY_SOCKET",
                            "JOURNAL_STREAM", "INVOCATION_ID", "CREDENTIALS_DIRECTORY")}
        env.update(HOME=str(home), XDG_RUNTIME_DIR=str(home), PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(ROOT))
        if key is not None:
            env["GEMINI_API_KEY"] = key
        env.update(extra_env or {})
        cmd = ["run"] if args is None else args
        if config is not None:
            cfg = tmp_path / "pivoice.toml"
            cfg.write_text(config)
            cmd += ["--config", str(cfg)]
        d = Daemon(cmd, env, tmp_path, wrap)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.stop(signal.SIGKILL)
        assert TEST_KEY not in d.output, "the API key appeared in pivoice's output"


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

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()
