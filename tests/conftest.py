"""pytest fixtures over the test harness. The harness itself (the virtual sound card, pivoice as a
subprocess or in this process, the NOTIFY_SOCKET, the speaker recorder, the clips) is tests/harness.py,
shared with bench/; tests import its helpers from there. Every fixture stops what it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from harness import (
    TEST_KEY,
    Daemon,
    InProcessDaemon,
    NotifySocket,
    SoundCard,
    daemon_env,
    die_with_parent,
    in_process_env,
    make_home,
)
from standin import LiveStandIn

# pytest-xdist runs the tests in as many processes as the machine has idle cores (pyproject.toml's addopts
# `-n auto`, and pytest_xdist_auto_num_workers below), a module at a time in one of them (--dist loadscope:
# a module's fixtures, such as test_systemd.py's containers, are set up once). The longest module goes
# first: one process boots the containers while the other runs the rest.
LONGEST_FIRST = ("test_systemd.py",)


def idle_cores(seconds: float = 0.5) -> float:
    """How many cores were idle over `seconds` (from /proc/stat)."""
    def sample() -> list[int]:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    a = sample()
    time.sleep(seconds)
    b = sample()
    delta = [y - x for x, y in zip(a, b, strict=True)]
    return (delta[3] + delta[4]) / max(1, sum(delta)) * (os.cpu_count() or 1)  # idle + iowait


def pytest_xdist_auto_num_workers(config):
    """One test process per idle core, at least one. Most tests play audio in real time through the virtual
    sound card: two processes on a machine whose cores are already busy starve it (an echo path lost, a
    container too slow), where one process does not. On an idle two-core machine (CI): two, about twice as
    fast."""
    return max(1, min(os.cpu_count() or 1, round(idle_cores())))


def pytest_configure(config):
    """An xdist worker dies with the run's main process, however that dies (then the processes the
    worker's tests started die with it: harness.die_with_parent)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        die_with_parent()
        if os.getppid() == 1:  # the main process was gone before the line above
            os._exit(1)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)  # stable: otherwise file order


@pytest.fixture
def home(tmp_path) -> Path:
    """A private HOME whose .asoundrc defines the test PCMs (the file PCMs use tmp_path's mic.raw and
    speaker.raw)."""
    return make_home(tmp_path / "home", files=tmp_path)


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


@pytest.fixture
def run_daemon(tmp_path, home):
    started: list[Daemon] = []

    def start(config: str | None, *, extra_env: dict[str, str] | None = None, key: str | None = TEST_KEY,
              args: list[str] | None = None, wrap: list[str] | None = None) -> Daemon:
        env = {**daemon_env(home, key), **(extra_env or {})}
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
        print(f"--- pivoice's log ---\n{d.output}")  # shown by pytest when the test failed
        assert TEST_KEY not in d.output, "the API key appeared in pivoice's output"


@pytest.fixture
def notify_socket(tmp_path):
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


@pytest.fixture
def mock_pins():
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    old = Device.pin_factory
    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = old


@pytest.fixture
def in_process(monkeypatch, home, standin):
    """Start pivoice in this process, against the stand-in and the test PCMs (given a config)."""
    for k, v in {**in_process_env(home), **standin.env()}.items():
        monkeypatch.setenv(k, v)
    started: list[InProcessDaemon] = []

    def start(config_text: str) -> InProcessDaemon:
        d = InProcessDaemon(config_text)
        started.append(d)
        return d

    yield start
    for d in started:
        if d._thread.is_alive():
            d.stop()
    from pivoice import heap

    heap.forget()  # the daemon froze this process's heap (pivoice/heap.py): let the next test's go
