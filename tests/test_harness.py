"""The harness itself: what the tests start never outlives them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import ROOT

CRASHING_RUN = """
import os, signal, sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from conftest import Daemon, SoundCard, SpeakerRecorder

home = Path({home!r})
card = SoundCard(home).start()
recorder = SpeakerRecorder(card, home)
config = home / "pivoice.toml"
config.write_text('[audio]\\ninput_device = "pv_mic"\\noutput_device = "pv_spk"\\n')
env = {{**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home), "GEMINI_API_KEY": "AIzaFAKE",
       "PYTHONPATH": {root!r}}}
daemon = Daemon(["run", "--config", str(config)], env, home)
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
    home.mkdir()
    (home / ".asoundrc").write_text('pcm.pv_mic { type pulse  device "mic_feed" }\n'
                                    'pcm.pv_spk { type pulse  device "speaker" }\n')
    script = textwrap.dedent(CRASHING_RUN).format(tests=str(ROOT / "tests"), home=str(home), root=str(ROOT))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "all up" in r.stdout, r.stdout + r.stderr
    assert r.returncode == -9
    deadline = time.monotonic() + 10
    while (left := processes_mentioning(str(home))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"processes left behind: {left}"
