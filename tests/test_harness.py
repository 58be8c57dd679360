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


SECOND_HOME = """
import os, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
import alsaaudio
from harness import in_process_env, make_home

for name in ("first", "second"):
    home = make_home(Path({base!r}) / name)
    os.environ.update(in_process_env(home) if {fixed} else {{"HOME": str(home)}})
    pcm = alsaaudio.PCM(alsaaudio.PCM_PLAYBACK, device="spk_file", rate=16000, channels=1,
                        format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=160)
    pcm.write(bytes(320))
    pcm.close()
"""


def test_a_test_in_a_process_that_opened_another_tests_pcms_gets_its_own(tmp_path):
    """alsa-lib keeps the first configuration it read in a process: a second in-process test (another
    HOME, another .asoundrc) would open the first test's spk_file. in_process_env makes it read the new
    one; shown here with HOME alone (the old way) failing."""
    results = {}
    for fixed in (False, True):
        base = tmp_path / str(fixed)
        code = SECOND_HOME.format(tests=str(ROOT / "tests"), base=str(base), fixed=fixed)
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
        results[fixed] = (base / "second" / "speaker.raw").exists()
    assert results == {False: False, True: True}


HELD_TEST = """
import time
from pathlib import Path
from harness import SoundCard, make_home

def test_held(tmp_path):
    card = SoundCard(make_home(Path({home!r}))).start()
    Path({home!r}, "up").touch()
    time.sleep(60)
    card.stop()
"""


def test_a_killed_parallel_run_leaves_no_worker_or_sound_server(tmp_path):
    """The README's command runs the tests in pytest-xdist workers: when the run's main process is killed
    (a CI time-out), its workers and what their tests started go too, not when the test at hand ends."""
    home = tmp_path / "held-home"
    (tmp_path / "test_held.py").write_text(HELD_TEST.format(home=str(home)))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q",
                            "-n", "2", f"--rootdir={tmp_path}", "-c", os.devnull, str(tmp_path / "test_held.py")],
                           cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (home / "up").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (home / "up").exists(), "the held test did not start"
        assert processes_mentioning(str(home)), "the sound server should be running"
    finally:
        run.kill()
        run.wait()
    # At once: without conftest.py's pytest_configure, the worker ends its test about 5 s later.
    deadline = time.monotonic() + 3
    while (left := processes_mentioning(str(home))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"processes left behind: {left}"


def test_on_a_machine_whose_cores_are_busy_the_tests_run_in_one_process():
    """pytest_xdist_auto_num_workers (conftest.py): one test process per idle core, one when none is idle
    (two processes beside busy cores starved the virtual sound card)."""
    from conftest import pytest_xdist_auto_num_workers

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.3)
        assert pytest_xdist_auto_num_workers(None) == 1
    finally:
        for s in spinners:
            s.kill()
            s.wait()


def test_the_stand_in_knows_a_sessions_token_as_soon_as_it_lists_the_session(standin):
    """A test that sees a new session reads its token at once (tests/container.py's converse): it must be
    there before the client's setup message arrives, which a busy machine delays."""
    import asyncio
    import ssl

    from websockets.asyncio.client import connect

    path = "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained"

    async def open_without_setup() -> None:
        ctx = ssl.create_default_context(cafile=str(standin.ca_file))
        async with connect(standin.base_url.replace("https", "wss") + path, ssl=ctx,
                           additional_headers={"Authorization": "Token auth_tokens/abc"}):
            deadline = time.monotonic() + 5
            while not standin.sessions and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert standin.sessions and standin.sessions[0].token == "auth_tokens/abc"

    asyncio.run(open_without_setup())
