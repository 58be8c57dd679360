"""The installed service under a real systemd: Debian bookworm (systemd 252) and trixie (257) booted in
containers (tests/container.py), pivoice installed there by scripts/install.sh, driven with systemctl and
journalctl as a person would.

Each release's container is built, booted and installed once and shared by these tests, in file order
(module-scoped fixtures: all of one release, then the other; the containers end with this file); the
last test uninstalls. The virtual sound card (PulseAudio, tests/conftest.py) and the Live API stand-in
run on the host and are reached from inside: an /etc/asound.conf names PCMs on the card's socket, and a
test-only drop-in gives the service the stand-in's URL and CA. Nothing in that drop-in changes how the
unit runs pivoice; where a test needs a shorter time (the watchdog, the start limit) or a Pi's file,
its own drop-in says so and goes away after it.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import trustme
from container import (
    ASOUND,
    DROPINS,
    IDLE,
    PIP_CACHE,
    RELEASES,
    SHARE,
    Container,
    System,
    build_root,
    copy_tree,
    remove_tree,
    require_root,
    sound_card,
    source_files,
)
from harness import ROOT, TEST_KEY, read_wav
from standin import LiveStandIn

NEW_KEY = TEST_KEY + "-new"
ANSWER_SECONDS = 3  # of the recorded answer: enough to hear it played, short to keep the tests quick


@pytest.fixture(scope="module")
def roots(request, tmp_path_factory):
    """The roots of the releases these tests will use, built one after another in the background from
    the first use on (the next one builds while the tests run in the first)."""
    problem = require_root()
    if problem:
        pytest.fail(problem)
    wanted = [r for r in RELEASES if any(getattr(item, "callspec", None) and item.callspec.params.get("system") == r
                                         for item in request.session.items)]
    bases = {r: tmp_path_factory.mktemp(f"systemd-{r}") for r in wanted}
    pool = ThreadPoolExecutor(1)
    builds = {r: pool.submit(build_root, r, bases[r] / "root", bases[r] / "build.log") for r in wanted}
    yield {r: (bases[r], builds[r]) for r in wanted}
    pool.shutdown(wait=True, cancel_futures=True)
    for base in bases.values():
        remove_tree(base / "root")


@pytest.fixture(autouse=True)
def fresh_start_limit(request):
    """Each test may start the service as often as it needs: the unit's start limit (10 starts in 5 min)
    counts from the test's beginning, not across the tests before it in the same container."""
    if "system" in request.fixturenames:
        request.getfixturevalue("system").c.systemctl("reset-failed", "pivoice", check=False)


def one_release(release: str):
    """Runs a test in one release's container only: for what does not differ between the two systemd
    versions (252, 257), to keep the suite's time down. What does differ (credentials, the unit's
    sandbox, installing) runs on both."""
    return pytest.mark.parametrize("system", [release], indirect=True)


@pytest.fixture(scope="module", params=RELEASES)
def system(request, roots):
    release = request.param
    base, build = roots[release]
    share = base / "share"
    share.mkdir()
    t0 = time.monotonic()
    build.result()
    built = time.monotonic()
    card = sound_card(base / "card", share / "pulse.sock")
    standin = LiveStandIn(share).start()  # its CA lands in the shared directory
    standin.behaviour.reply_after_seconds = 2.5
    standin.behaviour.input_transcripts = True  # keeps the listening window open while the user speaks
    standin.behaviour.reply_pcm = read_wav("reply_24k.wav")[:ANSWER_SECONDS * 48000]  # 24 kHz s16
    c = None
    try:
        c = Container(release, base / "root", share, Path.home() / ".cache" / "pivoice-tests" / "pip",
                      base / "container.log")
        c.present_pi()
        c.write("/etc/asound.conf", ASOUND)
        c.write(f"{DROPINS}/test.conf", f"""\
# tests/test_systemd.py: the Live API stand-in on the host, not Google's endpoint.
[Service]
Environment=GOOGLE_GEMINI_BASE_URL={standin.base_url}
Environment=SSL_CERT_FILE={SHARE}/standin-ca.pem
""")
        copy_tree(source_files(ROOT), ROOT, c.root / "root/pivoice")
        c.write("/root/api-key", TEST_KEY + "\n", 0o600)
        c.run("bash /root/pivoice/scripts/install.sh --api-key-file /root/api-key "
              "--input-device pv_mic --output-device pv_spk", env={"PIP_CACHE_DIR": PIP_CACHE}, timeout=900)
        installed = time.monotonic()
        s = System(release, c, card, standin, base)
        # What a person would edit: a shorter follow-up (quicker tests), a button and an LED.
        s.edit_config("follow_up_seconds = 8.0", "follow_up_seconds = 1.5")
        s.edit_config('led = "none"', 'led = "led"')
        s.edit_config("led_pins = []", "led_pins = [25]")
        s.edit_config("# button_pin = 17", "button_pin = 17")
        s.restart()
        print(f"{release}: waited {built - t0:.0f} s for the root, booted and installed in {installed - built:.0f} s")
        yield s
    finally:
        if c is not None:
            # The container's whole journal stays beside its (removed) root, to read after a failure.
            (base / "journal.txt").write_text(c.run("journalctl -b --no-pager -o short-precise", check=False).stdout)
            c.stop()
        card.stop()
        standin.stop()
        remove_tree(base / "root")


# ---------------------------------------------------------------------------------------------------
# 1. start, status, a conversation


def test_start_returns_when_ready_and_a_wake_word_gets_an_answer(system):
    s = system
    s.c.systemctl("stop", "pivoice")
    s.c.systemctl("start", "pivoice")  # Type=notify: returns once pivoice sent READY=1
    inv = s.invocation()
    assert s.c.show("ActiveState") == "active" and s.c.show("SubState") == "running"
    assert "ready" in s.events(inv), "systemctl start returned before pivoice said it was ready"
    assert s.c.show("StatusText") == IDLE
    status = s.c.systemctl("status", "pivoice", "--no-pager", "-n", "0").stdout
    assert f'Status: "{IDLE}"' in status, status

    session, rec = s.converse()
    heard = memoryview(bytes(session.audio)).cast("h")
    assert len(heard) > 16000 and max(abs(x) for x in heard) > 3000, "the stand-in got no speech"
    played = rec.loud_span()
    assert played > ANSWER_SECONDS - 1, f"the speaker played {played:.1f} s of the {ANSWER_SECONDS} s answer"
    events = s.events(inv)
    for e in ("wake", "connected", "model_audio", "turn_done", "follow_up_timeout"):
        assert e in events, events


# 2. the README's journal queries


def readme_block(after: str) -> list[tuple[str, str]]:
    """(command, comment) for each line of the README's code block that follows the line starting `after`."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    block, seen = [], False
    for line in lines[start + 1:]:
        if line.startswith("    "):
            command, _, comment = line.partition("  #")
            block.append((command.strip(), comment.strip()))
            seen = True
        elif seen and line.strip():
            break
    return block


@one_release("bookworm")  # the older journalctl: a query that works there works on trixie's
def test_the_readme_journal_queries_return_what_it_says(system):
    s = system
    queries = [command for command, _ in readme_block("Reading the journal")]
    follow, warnings, one, wakes, latency, tokens = (
        next(q for q in queries if test(q)) for test in (
            lambda q: q.endswith(" -f"), lambda q: "-p warning" in q, lambda q: "PIVOICE_SESSION=" in q,
            lambda q: "PIVOICE_EVENT=wake" in q, lambda q: "PIVOICE_LATENCY_MS" in q,
            lambda q: "PIVOICE_TOKENS_IN" in q))
    assert len(queries) == 6, f"README journal queries this test does not know: {queries}"

    s.restart()
    inv = s.invocation()
    follower = subprocess.Popen(s.c.command(follow), stdout=subprocess.PIPE, text=True)
    followed: list[str] = []
    reader = threading.Thread(target=lambda: followed.extend(follower.stdout), daemon=True)
    reader.start()
    try:
        for _ in range(3):
            s.converse()
        s.c.wait_for("the followed journal", lambda: sum("heard 'hey_jarvis'" in x for x in followed) >= 3, 20)
    finally:
        follower.terminate()
        follower.wait(10)

    # -p warning -b: the warnings of this boot (GPIO is not there), and nothing of lower priority.
    out = s.c.run(warnings).stdout
    assert "GPIO not available" in out and "ready: listening" not in out and "heard 'hey_jarvis'" not in out, out

    # PIVOICE_SESSION=3 of the running service: one conversation, whole, of this run only (the numbers
    # start at 1 with every start of the service).
    session = int(re.search(r"SESSION=(\d+)", one).group(1))
    assert session == 3, one  # the test makes three conversations in this run
    text = s.c.run(one).stdout
    assert "heard 'hey_jarvis'" in text and "no follow-up: conversation over" in text, text
    entries = [json.loads(x) for x in s.c.run(one + " -o json").stdout.splitlines() if x.strip()]
    assert {e["_SYSTEMD_INVOCATION_ID"] for e in entries} == {inv}, "the query mixes runs of the service"
    assert [e["PIVOICE_EVENT"] for e in entries][:2] == ["wake", "connected"]

    # PIVOICE_EVENT=wake --since today: every wake-up, and only those.
    lines = [x for x in s.c.run(wakes).stdout.splitlines() if " pivoice[" in x]
    all_wakes = s.entries("PIVOICE_EVENT=wake")
    assert len(lines) == len(all_wakes) >= 3 and all("heard 'hey_jarvis'" in x for x in lines), lines

    # ... -o json | jq -r .PIVOICE_LATENCY_MS: one number (ms) per connection.
    numbers = s.c.run(latency).stdout.split()
    assert len(numbers) == len(s.entries("PIVOICE_EVENT=connected")) >= 3, numbers
    assert all(n.isdigit() for n in numbers), numbers

    # ... PIVOICE_EVENT=usage ... | jq -s 'map(...) | add': the tokens of today's conversations, added up.
    usage = s.entries("PIVOICE_EVENT=usage")
    assert len(usage) >= 3, usage  # one per conversation
    total = sum(int(e["PIVOICE_TOKENS_IN"]) for e in usage)
    assert total > 0 and s.c.run(tokens).stdout.strip() == str(total)
    assert TEST_KEY not in s.c.journal("-b", "-o", "verbose"), "the API key is in the journal"


# 3. a new API key


def test_a_new_api_key_takes_effect_the_way_the_readme_says(system):
    s = system
    s.restart()
    (how,) = [cmd for cmd, comment in readme_block("## Running as a service")
              if "systemctl" in cmd and "/etc/pivoice/api-key" in comment]
    s.c.write("/etc/pivoice/api-key", NEW_KEY + "\n", 0o600)
    s.standin.behaviour.valid_key = NEW_KEY  # the old key is refused from now on, as the service would
    try:
        s.c.run(how.removeprefix("sudo "))
        s.wait_status(IDLE)
        _, rec = s.converse(key=NEW_KEY)  # fails when pivoice connects with the old key
        assert rec.loud_span() > ANSWER_SECONDS - 1, "no answer with the new key"
    finally:
        s.standin.behaviour.valid_key = None


# 4. the watchdog


@one_release("trixie")  # the watchdog has not changed between the two
def test_a_hung_event_loop_is_restarted_by_the_watchdog(system):
    s = system
    s.dropin("watchdog.conf", "# tests/test_systemd.py: a shorter watchdog, to wait less.\n[Service]\nWatchdogSec=5\n")
    try:
        s.restart()
        pid, restarts = s.c.show("MainPID"), int(s.c.show("NRestarts"))
        s.c.run(f"kill -STOP {pid}")  # the event loop (and all else) stops: no more WATCHDOG=1
        s.c.wait_for("a restart", lambda: s.c.show("MainPID") not in (pid, "0"), 120)
        s.wait_status(IDLE)
        assert int(s.c.show("NRestarts")) == restarts + 1
        log = s.c.journal("-b", "-u", "pivoice", "-o", "cat")
        assert "Watchdog timeout" in log, log[-3000:]
    finally:
        s.dropin("watchdog.conf", None)
        s.restart()


# 5. a microphone that is not there at start


@one_release("bookworm")  # the start limit works alike on both
def test_a_missing_microphone_at_start_waits_for_it_and_does_not_hit_the_start_limit(system):
    s = system
    # A restart loop reaches the unit's start limit sooner (3 starts, 1 s apart), to wait less.
    s.dropin("restart.conf", "# tests/test_systemd.py: reach the start limit sooner.\n"
                             "[Unit]\nStartLimitBurst=3\n[Service]\nRestartSec=1\n")
    s.edit_config('input_device = "pv_mic"', 'input_device = "pv_late_mic"')
    late = None
    try:
        s.c.systemctl("restart", "pivoice", check=False)
        time.sleep(10)  # long enough for 3 failed starts, 1 s apart
        state = s.c.show("ActiveState"), s.c.show("NRestarts")
        assert state == ("active", "0"), s.c.systemctl("status", "pivoice", "--no-pager", check=False).stdout
        assert "microphone" in s.c.show("StatusText"), s.c.show("StatusText")
        late = sound_card(s.base / "late-card", s.base / "share" / "late" / "pulse.sock")
        s.wait_status(IDLE, 60)
        assert s.c.show("ActiveState") == "active" and s.c.show("NRestarts") == "0"
    finally:
        s.edit_config('input_device = "pv_late_mic"', 'input_device = "pv_mic"')
        s.dropin("restart.conf", None)
        s.c.systemctl("reset-failed", "pivoice", check=False)
        s.restart()
        if late is not None:
            late.stop()


# 6. a broken config


def test_a_config_error_is_not_restarted_and_status_says_why(system):
    s = system
    s.edit_config("[audio]\n", "[audio]\nvolume = 11\n")
    try:
        r = s.c.systemctl("restart", "pivoice", check=False)
        assert r.returncode != 0
        time.sleep(8)  # RestartSec=5: a restart would have come by now
        assert s.c.show("ActiveState") == "failed" and s.c.show("NRestarts") == "0"
        status = s.c.systemctl("status", "pivoice", "--no-pager", check=False).stdout
        assert "status=78/CONFIG" in status, status
        assert "audio.volume" in status, status  # the log line naming the key, in the status's tail
    finally:
        s.edit_config("[audio]\nvolume = 11\n", "[audio]\n")
        s.restart()


# 7. GPIO under the unit's sandbox


def test_gpio_starts_under_the_units_sandbox(system):
    """The container's kernel has no GPIO chip, so the furthest any pin backend can get is opening one:
    lgpio must get there (imported, board identified) and nothing before it may fail."""
    s = system
    s.dropin("pi.conf", "# tests/test_systemd.py: a Raspberry Pi 4's /proc/cpuinfo where gpiozero reads it.\n"
                        f"[Service]\nBindReadOnlyPaths={SHARE}/pi/cpuinfo:/proc/cpuinfo\n")
    try:
        r = s.c.systemctl("restart", "pivoice", check=False)
        assert r.returncode == 0, s.c.systemctl("status", "pivoice", "--no-pager", check=False).stdout
        s.wait_status(IDLE)
        gpio = [e["MESSAGE"] for e in s.entries(invocation=s.invocation()) if "GPIO" in e.get("MESSAGE", "")]
        assert gpio, "no GPIO line in the log"
        line = gpio[0]
        # lgpio: imported (it makes a FIFO in the working directory), the board identified (from
        # /proc/cpuinfo), the chip opened: only the last can fail here.
        assert re.search(r"lgpio: '?can not open gpiochip", line), line
        assert "cpuinfo" not in line and "revision" not in line.lower(), line
    finally:
        s.dropin("pi.conf", None)
        s.restart()


# 9. systemd-analyze security, online


def test_security_exposure_in_the_booted_system_matches_the_offline_figure(system):
    s = system

    def exposure(args: str) -> float:
        out = s.c.run(f"systemd-analyze security {args}").stdout
        return float(re.search(r"Overall exposure level for pivoice.service: ([\d.]+)", out).group(1))

    online = exposure("pivoice")
    offline = exposure("--offline=true /etc/systemd/system/pivoice.service")
    host = subprocess.run(["systemd-analyze", "security", "--offline=true", str(ROOT / "systemd/pivoice.service")],
                          capture_output=True, text=True).stdout
    host_figure = float(re.search(r"Overall exposure level for pivoice.service: ([\d.]+)", host).group(1))
    print(f"{s.release}: exposure online {online}, offline {offline}, this machine offline {host_figure}")
    assert online == offline == host_figure <= 2.0


# 10. no API key on the speaker: the key service and a speaker installed as the README says (issue 16)


def test_a_speaker_installed_with_a_device_secret_gets_tokens_from_the_key_service(system):
    s, c = system, system.c
    readme = (ROOT / "README.md").read_text()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    c.write("/root/cert.pem", cert.cert_chain_pems[0].bytes().decode())
    c.write("/root/cert-key.pem", cert.private_key_pem.bytes().decode(), 0o600)
    c.write("/root/ca.pem", ca.cert_pem.bytes().decode())
    # The key service's own copy of the key, elsewhere: the speaker's /etc/pivoice/api-key goes away below,
    # as on a speaker that never had one (this one machine stands for two).
    c.write("/root/service-api-key", TEST_KEY + "\n", 0o600)
    c.run("bash /root/pivoice/scripts/install-token-service.sh --api-key-file /root/service-api-key "
          "--tls-cert /root/cert.pem --tls-key /root/cert-key.pem", env={"PIP_CACHE_DIR": PIP_CACHE}, timeout=900)
    tokens_dropins = "/etc/systemd/system/pivoice-tokens.service.d"
    c.write(f"{tokens_dropins}/test.conf", f"""[Service]
Environment=SSL_CERT_FILE={SHARE}/standin-ca.pem
""")
    cfg = c.root / "etc/pivoice/tokens.toml"
    cfg.write_text(cfg.read_text().replace('base_url = ""', f'base_url = "{s.standin.rest_url}"'))
    c.systemctl("daemon-reload")
    c.systemctl("restart", "pivoice-tokens")  # Type=notify: returns once it listens
    assert c.show("ActiveState", "pivoice-tokens") == "active"
    assert "sudo bash scripts/install-token-service.sh --add-device kitchen" in readme
    out = c.run("bash /root/pivoice/scripts/install-token-service.sh --add-device kitchen").stdout
    secret = next(line.strip() for line in out.splitlines() if line.startswith("    "))
    c.write("/root/kitchen.secret", secret + "\n", 0o600)
    s.standin.behaviour.valid_key = TEST_KEY  # only the key service can mint
    c.run("rm /etc/pivoice/api-key")
    try:
        c.run("bash /root/pivoice/scripts/install.sh --token-url https://127.0.0.1:8443/token --device-secret-file "
              "/root/kitchen.secret --token-ca-file /root/ca.pem", env={"PIP_CACHE_DIR": PIP_CACHE}, timeout=900)
        config = c.read("/etc/pivoice/pivoice.toml").decode()
        assert 'token_url = "https://127.0.0.1:8443/token"' in config  # set by install.sh in the kept config
        assert 'token_ca_file = "/etc/pivoice/token-ca.pem"' in config
        s.wait_status(IDLE)
        check = c.run("/opt/pivoice/venv/bin/pivoice check --online --config /etc/pivoice/pivoice.toml",
                      env={"GOOGLE_GEMINI_BASE_URL": s.standin.base_url, "SSL_CERT_FILE": f"{SHARE}/standin-ca.pem"},
                      check=False)
        assert "OK online: the key service gave a token" in check.stdout, check.stdout + check.stderr
        # Every other piece is fine but the GPIO button: the container's kernel has no GPIO chip.
        assert "NOT OK: GPIO (see above)" in check.stdout, check.stdout + check.stderr
        session, rec = s.converse(key=None)
        assert session.path.endswith(".BidiGenerateContentConstrained") and session.token
        assert rec.loud_span() > ANSWER_SECONDS - 1, "no answer with a token"
        # The speaker's service holds the secret and no key: its credentials, its environment.
        pid = c.show("MainPID")
        assert c.run("ls /run/credentials/pivoice.service").stdout.split() == ["pivoice-device-secret"]
        assert TEST_KEY not in c.run(f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout
        assert TEST_KEY not in c.journal("-b", "-u", "pivoice", "-u", "pivoice-tokens")
        # Every mint: one journal entry with the speaker's name, as the README's query finds it.
        (query,) = [line.strip() for line in readme.splitlines() if "PIVOICE_DEVICE=kitchen" in line]
        mints = [json.loads(x) for x in c.run(query.split("  #")[0] + " -o json").stdout.splitlines() if x.strip()]
        assert mints and all(m["PIVOICE_RESULT"] == "ok" and secret not in json.dumps(m) for m in mints), mints
        # Revoked the README's way: the key service says so.
        (how,) = [line.strip() for line in readme.splitlines() if "sed -i '/^kitchen /d'" in line]
        c.run(how.replace("sudo ", ""))
        c.wait_for("the revocation in the key service's journal",
                   lambda: "revoked: kitchen" in c.journal("-b", "-u", "pivoice-tokens"), 20)
    finally:  # back to the API key, as the other tests expect; the key service removed
        s.standin.behaviour.valid_key = None
        c.write("/etc/pivoice/api-key", TEST_KEY + "\n", 0o600)
        s.edit_config('token_url = "https://127.0.0.1:8443/token"', 'token_url = ""')
        s.edit_config('token_ca_file = "/etc/pivoice/token-ca.pem"', 'token_ca_file = ""')
        c.run(f"rm -rf /etc/pivoice/device-secret /etc/pivoice/token-ca.pem {DROPINS}/tokens.conf {tokens_dropins}")
        c.run("bash /root/pivoice/scripts/install-token-service.sh --uninstall")
        c.run("rm -f /etc/pivoice/tokens.toml /etc/pivoice/devices /etc/pivoice/tokens-cert.pem "
              "/etc/pivoice/tokens-key.pem")
        c.systemctl("daemon-reload")
        s.restart()


# 8. upgrade, then uninstall (last: it removes what the others use)


def test_upgrade_keeps_config_and_key_and_purge_leaves_nothing(system):
    s = system
    config, key = s.c.read("/etc/pivoice/pivoice.toml"), s.c.read("/etc/pivoice/api-key")
    r = s.c.run("bash /root/pivoice/scripts/install.sh", env={"PIP_CACHE_DIR": PIP_CACHE}, timeout=900)
    assert "keeping your /etc/pivoice/pivoice.toml" in r.stdout and "API key: keeping" in r.stdout, r.stdout
    assert s.c.read("/etc/pivoice/pivoice.toml") == config and s.c.read("/etc/pivoice/api-key") == key
    s.wait_status(IDLE)
    assert s.c.show("ActiveState") == "active"
    assert s.c.run("stat -c '%U %a' /etc/pivoice/api-key").stdout.strip() == "root 600"

    s.c.run("bash /root/pivoice/scripts/install.sh --uninstall --purge")
    assert s.c.run("id pivoice", check=False).returncode != 0, "the user pivoice is still there"
    assert s.c.run("getent group pivoice", check=False).returncode != 0, "the group pivoice is still there"
    # No unit file; and no unit left loaded. A removed unit shows as "not-found inactive dead" until
    # systemd's garbage collection unloads it, which on a loaded machine can lag the daemon-reload.
    deadline, units = time.monotonic() + 20, "?"
    while units.strip() and time.monotonic() < deadline:
        units = s.c.run("systemctl list-units --all --no-legend 'pivoice*'; "
                        "systemctl list-unit-files --no-legend 'pivoice*'", check=False).stdout  # (exits 1: none)
        time.sleep(0.5 if units.strip() else 0)
    assert units.strip() == "", units
    skip = ("/proc", "/sys", "/dev", "/root/pivoice", SHARE, PIP_CACHE)
    prune = " -o ".join(f"-path {p}" for p in skip)
    left = s.c.run(f"find / \\( {prune} \\) -prune -o -name '*pivoice*' -print").stdout.split()
    assert left == [], left
