"""The harness itself: what the tests start never outlives them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from harness import ROOT

CRASHING_RUN = """
import os, signal, sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from harness import CARD_AUDIO, Daemon, SoundCard, SpeakerRecorder, daemon_env, make_home

home = make_home(Path({home!r}))
card = SoundCard(home).start()
recorder = SpeakerRecorder(card, home)
config = home / "pivoice.toml"
config.write_text(CARD_AUDIO)
daemon = Daemon(["run", "--config", str(config)], daemon_env(home, "AIzaFAKE"), home)
daemon.wait_for("ready: listening", timeout=30)
print("all up", flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # the interpreter dies: no fixture teardown, no atexit
"""


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline or text.encode() in environ:
            found.append(pid + ": " + cmdline.replace(b"\0", b" ").decode(errors="replace")[:120])
    return found


def test_a_test_process_that_dies_leaves_no_sound_server_or_daemon(tmp_path):
    home = tmp_path / "crashing-home"
    script = textwrap.dedent(CRASHING_RUN).format(tests=str(ROOT / "tests"), home=str(home))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "all up" in r.stdout, r.stdout + r.stderr
    assert r.returncode == -9
    deadline = time.monotonic() + 10
    while (left := processes_mentioning(str(home))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"processes left behind: {left}"
