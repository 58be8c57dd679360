"""The service side: the unit file, sd_notify, the watchdog, journald, the installer."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import signal
import subprocess
import time

import pytest
from harness import ROOT, TEST_KEY, read_wav, silence

from pivoice.systemd import Notifier

UNIT = ROOT / "systemd" / "pivoice.service"

CONFIG = """
[audio]
input_device = "{mic}"
output_device = "spk_file"
[conversation]
follow_up_seconds = 1.5
[log]
level = "debug"
"""


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_verifies_cleanly(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze missing: bash scripts/setup.sh --dev installs it"
    # The unit as installed, but with ExecStart pointing at this checkout's pivoice (verify checks
    # that the executable exists).
    unit = tmp_path / "pivoice.service"
    exe = ROOT / ".venv" / "bin" / "pivoice"
    assert exe.exists()
    unit.write_text(UNIT.read_text().replace("/opt/pivoice/venv/bin/pivoice", str(exe)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    # verify exits 0 on many problems it only prints: any line it prints is a failure.
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_unit_exposure_is_at_most_2():
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                       capture_output=True, text=True)
    m = re.search(r"Overall exposure level for pivoice.service: ([\d.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    print(f"exposure {m.group(1)}")
    assert float(m.group(1)) <= 2.0


def test_unit_essentials():
    s = unit_settings()
    assert s["Type"] == ["notify"]
    assert s["Restart"] == ["on-failure"]
    assert "78" in s["RestartPreventExitStatus"][0].split()
    assert int(s["WatchdogSec"][0]) > 0
    assert s["LoadCredential"] == ["gemini-api-key:/etc/pivoice/api-key"]
    assert set(s["SupplementaryGroups"][0].split()) == {"audio", "gpio"}
    assert "network-online.target" in s["After"][0] and "sound.target" in s["After"][0]
    assert s["ExecStart"][0].split()[0] == "/opt/pivoice/venv/bin/pivoice"  # where install.sh puts it
    assert "/opt/pivoice/venv" in (ROOT / "scripts" / "install.sh").read_text()


def test_notify_follows_a_conversation(soundcard, standin, run_daemon, notify_socket):
    standin.behaviour.reply_after_seconds = 2.5
    standin.behaviour.input_transcripts = True  # keeps the listening window open while the user speaks
    standin.behaviour.reply_pcm = read_wav("reply_24k.wav")
    d = run_daemon(CONFIG.format(mic="pv_mic"), extra_env={
        **standin.env(), "NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"})
    d.wait_for("ready: listening")
    standin.wait_for(lambda: "READY=1" in notify_socket.lines(), 5, "READY=1")
    soundcard.say(silence(0.5) + read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_time_tokyo.wav"))
    d.wait_for("no follow-up: conversation over", timeout=20)
    time.sleep(0.3)
    code, _ = d.stop()
    assert code == 0
    time.sleep(0.2)

    statuses = notify_socket.lines("STATUS=")
    assert statuses == [
        "STATUS=Listening for 'hey jarvis'",
        "STATUS=Wake word heard: connecting to Gemini",
        "STATUS=In conversation: listening",
        "STATUS=In conversation: answering",
        "STATUS=In conversation: listening",
        "STATUS=Listening for 'hey jarvis'",
        "STATUS=Stopping",
    ]
    msgs = [m for _, m in notify_socket.messages]
    assert msgs.index("READY=1") < msgs.index("STATUS=Listening for 'hey jarvis'") + 1
    assert msgs.count("READY=1") == 1
    assert msgs[-2:] == ["STOPPING=1", "STATUS=Stopping"]
    # WATCHDOG_USEC=1 s: pings every half second, the whole time it ran.
    pings = [t for t, m in notify_socket.messages if m == "WATCHDOG=1"]
    assert len(pings) >= 6
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < 0.9, gaps


def test_no_ready_when_the_devices_cannot_open(run_daemon, notify_socket):
    d = run_daemon(CONFIG.format(mic="nope"), extra_env={"NOTIFY_SOCKET": str(notify_socket.path)})
    assert d.wait_exit() == 78
    time.sleep(0.1)
    assert "READY=1" not in notify_socket.lines()


def test_watchdog_pings_stop_while_the_event_loop_is_blocked(notify_socket, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_socket.path))
    notifier = Notifier({"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "200000"})
    assert notifier.watchdog_interval == pytest.approx(0.1)

    async def scenario():
        task = asyncio.create_task(notifier.watchdog())
        await asyncio.sleep(0.5)
        blocked_at = time.monotonic()
        time.sleep(1.0)  # a hung event loop
        await asyncio.sleep(0.5)
        task.cancel()
        return blocked_at

    blocked_at = asyncio.run(scenario())
    time.sleep(0.1)
    pings = [t for t, m in notify_socket.messages if m == "WATCHDOG=1"]
    during = [t for t in pings if blocked_at + 0.05 < t < blocked_at + 0.95]
    assert during == []
    assert any(t < blocked_at for t in pings) and any(t > blocked_at + 1.0 for t in pings)


def test_notify_is_silently_off_without_a_socket():
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval is None
    n.send("READY=1")  # no error


def test_reload_rereads_the_key(run_daemon, notify_socket, tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text(TEST_KEY)
    (tmp_path / "mic.raw").write_bytes(silence(2.0))
    d = run_daemon(CONFIG.format(mic="mic_file") + f'[live]\napi_key_file = "{key_file}"\n', key=None,
                   extra_env={"NOTIFY_SOCKET": str(notify_socket.path)})
    d.wait_for("ready: listening")
    key_file.write_text("")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for("reload failed, keeping the previous API key: live.api_key_file .* is empty")
    key_file.write_text(TEST_KEY + "2")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for("reloaded: API key from file")
    assert d.stop()[0] == 0
    deadline = time.monotonic() + 5  # (the socket's reading thread may be a moment behind the exit)
    while len(notify_socket.lines("READY=1")) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert notify_socket.lines("RELOADING=1") and len(notify_socket.lines("READY=1")) == 3


def _journal_wrap(tmp_path, mode: str) -> list[str]:
    if not shutil.which("unshare") or not shutil.which("journalctl"):
        pytest.fail("unshare/journalctl missing: bash scripts/setup.sh --dev installs systemd")
    return ["unshare", "-m", "--propagation", "private", "bash", str(ROOT / "tests" / "journal_ns.sh"),
            str(tmp_path), mode, "--"]


def test_journald_gets_the_events_with_fields_and_never_the_key(soundcard, standin, run_daemon, tmp_path):
    standin.behaviour.reply_after_seconds = 2.5
    standin.behaviour.input_transcripts = True
    standin.behaviour.reply_pcm = read_wav("reply_24k.wav")
    d = run_daemon(CONFIG.format(mic="pv_mic"), wrap=_journal_wrap(tmp_path, "journald"),
                   extra_env={**standin.env(), "INVOCATION_ID": "0123456789abcdef0123456789abcdef"})
    standin.wait_for(lambda: (tmp_path / "pid").exists(), 10, "the daemon to start")
    time.sleep(2.0)  # imports and model loading; the log goes to the journal, not to us
    soundcard.say(silence(0.5) + read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_time_tokyo.wav"))
    standin.wait_for(lambda: standin.sessions and standin.sessions[0].closed_at, 25, "the conversation to end")
    time.sleep(0.3)
    import os

    os.kill(int((tmp_path / "pid").read_text()), signal.SIGTERM)
    assert d.wait_exit() == 0, d.output
    assert d.output.strip() == "", "with journald there, nothing should go to stderr"

    entries = [json.loads(line) for line in (tmp_path / "journal.json").read_text().splitlines()]
    ours = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "pivoice"]
    events = [e.get("PIVOICE_EVENT") for e in ours if "PIVOICE_EVENT" in e]
    for expected in ("ready", "wake", "connected", "model_audio", "turn_done", "follow_up_timeout", "stop"):
        assert expected in events, events
    wake = next(e for e in ours if e.get("PIVOICE_EVENT") == "wake")
    assert wake["PIVOICE_STATE"] == "connecting" and wake["PIVOICE_SESSION"] == "1"
    assert wake["PRIORITY"] == "6"
    connected = next(e for e in ours if e.get("PIVOICE_EVENT") == "connected")
    assert int(connected["PIVOICE_LATENCY_MS"]) >= 0
    # What the conversation cost: the stand-in's usage metadata (as gemini-3.8-live sends it), added up.
    usage = [e for e in ours if e.get("PIVOICE_EVENT") == "usage"]
    sent = standin.sessions[0].usage_sent
    assert len(usage) == 1 and sent, (usage, sent)
    assert int(usage[0]["PIVOICE_TOKENS_IN"]) == sum(i for i, _ in sent) > 0
    assert int(usage[0]["PIVOICE_TOKENS_OUT"]) == sum(o for _, o in sent) > 0
    assert float(usage[0]["PIVOICE_AUDIO_OUT_SECONDS"]) == round(len(standin.behaviour.reply_pcm) / 48000, 1)
    assert float(usage[0]["PIVOICE_AUDIO_IN_SECONDS"]) == round(len(standin.sessions[0].audio) / 32000, 1)
    # The key: not in any field of any entry, nor anywhere in the journal files.
    assert TEST_KEY not in (tmp_path / "journal.json").read_text()
    for f in (tmp_path / "raw").rglob("*"):
        if f.is_file():
            assert TEST_KEY.encode() not in f.read_bytes()


@pytest.mark.parametrize("mode", ["none", "stale"])
def test_without_journald_the_log_falls_back_to_stderr(mode, run_daemon, tmp_path):
    d = run_daemon(CONFIG.format(mic="nope"), wrap=_journal_wrap(tmp_path, mode),
                   extra_env={"INVOCATION_ID": "0123456789abcdef0123456789abcdef"})
    assert d.wait_exit() == 78
    assert "there is no ALSA capture device named 'nope'" in d.output
    assert "Logging error" not in d.output and "Traceback" not in d.output


def test_install_script_dry_run(tmp_path):
    key = tmp_path / "key"
    key.write_text(TEST_KEY)
    r = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), "--dry-run", "--api-key-file", str(key)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"would run: install -m 0600 -o root -g root {key} /etc/pivoice/api-key" in out
    assert "would run: systemctl enable pivoice.service" in out
    assert "systemctl status pivoice" in out.splitlines()[-1]
    assert TEST_KEY not in out
    r = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), "--dry-run", "--uninstall"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "/etc/pivoice" not in r.stdout.replace("stay in /etc/pivoice", "")
