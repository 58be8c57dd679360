"""A real systemd to test the installed service under: a Debian root booted in a container.

`mmdebstrap` builds a minimal bookworm or trixie root (systemd 252 / 257) from this machine's apt
sources; `systemd-nspawn --boot --register=no --keep-unit` boots it (the host's PID 1 need not be
systemd); commands reach it with `nsenter` into its init's namespaces, so `systemctl` and `journalctl`
run there exactly as a person would type them. The container shares the host's network: the Live API
stand-in on 127.0.0.1 is reachable from inside.

What the tests hand in is under /run/pvtest (a bind mount of a host directory): the PulseAudio socket
of the virtual sound card, the stand-in's CA, and a Raspberry Pi's /proc/cpuinfo. pip inside uses a
cache on the host (~/.cache/pivoice-tests/pip), shared by the releases and kept between runs. `System`
is pivoice installed in a container, with what the tests do to it. Needs root.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import TEST_KEY, SoundCard, SpeakerRecorder, read_wav, silence
from standin import LiveStandIn

SHARE = "/run/pvtest"  # the host directory shared with the container, as seen from inside
PIP_CACHE = "/var/cache/pivoice-tests-pip"  # the host's pip cache for these tests, inside
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# In the root from the start: what an image of Raspberry Pi OS Lite has that pivoice relies on or a
# person uses (jq: the README's latency query; libasound2-plugins: the tests' ALSA pulse PCMs).
PACKAGES = ["systemd", "systemd-sysv", "dbus", "ca-certificates", "python3", "libasound2-plugins", "jq",
            "procps", "kmod"]

# A Raspberry Pi 4 Model B's /proc/cpuinfo (64-bit kernel): gpiozero reads "Revision", install.sh "Model".
_A72 = """processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

"""
PI4_CPUINFO = "".join(_A72.format(n=n) for n in range(4)) + (
    "Revision\t: c03114\nSerial\t\t: 10000000a1b2c3d4\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n")


def _end_with_parent() -> None:
    """preexec_fn for mmdebstrap and systemd-nspawn: SIGTERM when the test process dies, however it dies.
    mmdebstrap then cleans up its mounts; nspawn sends its --kill-signal (SIGKILL) to the container's
    init, which takes the whole container down. (A SIGKILL to nspawn itself would not: its container
    lives on without it.)"""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def missing_tools() -> list[str]:
    return [t for t in ("mmdebstrap", "systemd-nspawn", "nsenter") if not shutil.which(t)]


def build_root(release: str, root: Path, log: Path) -> None:
    """A minimal Debian root with systemd, trusting this machine's extra CAs (package registries may be
    reached through a TLS-intercepting proxy) for apt and pip alike."""
    with open(log, "ab") as out:
        subprocess.run(["mmdebstrap", "--variant=apt", "--include=" + ",".join(PACKAGES), release, str(root)],
                       stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=900,
                       preexec_fn=_end_with_parent)
        local_cas = Path("/usr/local/share/ca-certificates")
        if local_cas.is_dir():
            shutil.copytree(local_cas, root / "usr/local/share/ca-certificates", dirs_exist_ok=True)
        subprocess.run(["chroot", str(root), "update-ca-certificates"], stdout=out, stderr=subprocess.STDOUT,
                       check=True, timeout=120)
    # pip vendors its own CA list: point it at the system's, which now has this machine's CAs.
    (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")


class Container:
    """A booted root. run() executes a shell command inside, as root, with a clean environment."""

    def __init__(self, release: str, root: Path, share: Path, pip_cache: Path, log: Path):
        self.release, self.root, self.share, self.log = release, root, share, log
        pip_cache.mkdir(parents=True, exist_ok=True)
        share.chmod(0o755)  # the service's user reaches the sound socket and the stand-in's CA through it
        self._log = open(log, "ab")  # noqa: SIM115 - nspawn writes to it until stop() closes it
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "-D", str(root), "--boot", "--register=no", "--keep-unit",
             "--console=pipe", "--kill-signal=SIGKILL", f"--machine=pv-{release}", f"--bind={share}:{SHARE}",
             f"--bind={pip_cache}:{PIP_CACHE}"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_end_with_parent,  # the container ends with the test process, however that ends
        )
        self.pid = self._init_pid()
        state = self._wait_booted()
        if state not in ("running", "degraded"):
            raise RuntimeError(f"{release} did not boot: {state}; see {log}")

    def _init_pid(self) -> int:
        """The container's systemd: the nspawn process's descendant running /sbin/init."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited with {self.proc.returncode}; see {self.log}")
            todo = [self.proc.pid]
            while todo:
                pid = todo.pop()
                for task in Path(f"/proc/{pid}/task").glob("*"):
                    try:
                        children = (task / "children").read_text().split()
                    except OSError:
                        continue
                    for c in map(int, children):
                        try:
                            if Path(f"/proc/{c}/comm").read_text().strip() == "systemd":
                                return c
                        except OSError:
                            pass
                        todo.append(c)
            time.sleep(0.05)
        raise RuntimeError(f"no systemd in the {self.release} container; see {self.log}")

    def _wait_booted(self) -> str:
        deadline = time.monotonic() + 120
        while True:
            r = self.run("systemctl is-system-running --wait", check=False, timeout=120)
            state = r.stdout.strip()
            if state in ("running", "degraded") or time.monotonic() > deadline:
                return state or r.stderr.strip()
            time.sleep(0.2)

    # -- commands -------------------------------------------------------------------------------------
    def command(self, cmd: str, env: dict[str, str] | None = None) -> list[str]:
        """The argv that runs shell command `cmd` inside (for Popen)."""
        environ = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb", "SYSTEMD_PAGER": "",
                   "SYSTEMD_COLORS": "0", **(env or {})}
        return ["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-n", "-p", "--",
                "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in environ.items()), "/bin/bash", "-c", cmd]

    def run(self, cmd: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run(self.command(cmd, env), capture_output=True, text=True, timeout=timeout,
                           input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"in {self.release}: `{cmd}` exited {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def systemctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run("systemctl " + shlex.join(args), check=check, timeout=timeout)

    def show(self, prop: str, unit: str = "pivoice") -> str:
        return self.run(f"systemctl show -p {prop} --value {unit}").stdout.strip()

    def journal(self, *args: str) -> str:
        return self.run("journalctl --no-pager " + shlex.join(args)).stdout

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """A file in the container's root filesystem (not /run: that is the container's own tmpfs)."""
        assert not path.startswith("/run/"), path
        f = self.root / path.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        f.chmod(mode)

    def read(self, path: str) -> bytes:
        return (self.root / path.lstrip("/")).read_bytes()

    def wait_for(self, what: str, predicate, timeout: float = 60, interval: float = 0.2):
        """Polls predicate() until it returns something true; returns that."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"in {self.release}: timed out after {timeout} s waiting for {what}")
            time.sleep(interval)

    # -- the Pi -------------------------------------------------------------------------------------
    def present_pi(self) -> None:
        """This container's /proc/cpuinfo reads as a Raspberry Pi 4's (what install.sh and gpiozero look
        at; this kernel has no device tree). The service gets a /proc of its own (ProtectProc=): a unit
        drop-in puts the same file there (see test_systemd.py)."""
        (self.share / "pi").mkdir(exist_ok=True)
        (self.share / "pi" / "cpuinfo").write_text(PI4_CPUINFO)
        self.run(f"mount --bind {SHARE}/pi/cpuinfo /proc/cpuinfo")

    # -- the end -------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ends the container at once (nspawn's --kill-signal: SIGKILL to its init); the root is thrown
        away after, so there is nothing to shut down cleanly."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if Path(f"/proc/{self.pid}").exists():  # (nspawn gone, its container not: never leave it running)
            os.kill(self.pid, signal.SIGKILL)
        self._log.close()


RELEASES = ["bookworm", "trixie"]
DROPINS = "/etc/systemd/system/pivoice.service.d"
NEW_KEY = TEST_KEY + "-new"
IDLE = "Listening for 'hey jarvis'"

ASOUND = f"""# tests/test_systemd.py: the host's virtual sound card (PulseAudio) as ALSA PCMs.
pcm.pv_mic {{ type pulse  device "mic_feed"  server "unix:{SHARE}/pulse.sock" }}
pcm.pv_spk {{ type pulse  device "speaker"  server "unix:{SHARE}/pulse.sock" }}
# A microphone that is not there until test 5 starts a second sound server.
pcm.pv_late_mic {{ type pulse  device "mic_feed"  server "unix:{SHARE}/late/pulse.sock" }}
"""


@dataclass
class System:
    """pivoice installed in container `c`, its sound card and the Live API stand-in on the host."""

    release: str
    c: Container
    card: SoundCard
    standin: LiveStandIn
    base: Path

    def invocation(self) -> str:
        return self.c.show("InvocationID")

    def entries(self, *matches: str, invocation: str | None = None) -> list[dict]:
        """pivoice's journal entries (this boot), as JSON, optionally of one run of the service."""
        extra = [f"_SYSTEMD_INVOCATION_ID={invocation}"] if invocation else []
        out = self.c.journal("-b", "-u", "pivoice", "-o", "json", *matches, *extra)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def events(self, invocation: str) -> list[str]:
        return [e["PIVOICE_EVENT"] for e in self.entries(invocation=invocation) if "PIVOICE_EVENT" in e]

    def wait_status(self, text: str, timeout: float = 60) -> None:
        self.c.wait_for(f"STATUS={text!r} (now {self.c.show('StatusText')!r})",
                        lambda: self.c.show("StatusText") == text, timeout)

    def restart(self) -> None:
        self.c.systemctl("restart", "pivoice")
        self.wait_status(IDLE)

    def converse(self, key: str | None = TEST_KEY) -> tuple[object, SpeakerRecorder]:
        """A person says the wake word and a question; returns the stand-in's session and what the speaker
        played, once the answer has been played and the conversation is over. `key`: the API key pivoice
        must connect with (never shown: the message says only whether it was the old one); None: a token."""
        n = len(self.standin.sessions)
        rec = SpeakerRecorder(self.card, self.base)
        try:
            self.card.say(silence(0.5) + read_wav("hey_jarvis.wav") + silence(0.15)
                          + read_wav("command_time_tokyo.wav"))
            self.standin.wait_for(lambda: len(self.standin.sessions) > n, 40, f"a connection in {self.release}")
            session = self.standin.sessions[n]
            sent = session.headers.get("x-goog-api-key")
            if key is not None:
                assert sent == key, "pivoice connected with " + ("the old API key" if sent == TEST_KEY else "another key")
            else:
                assert sent != TEST_KEY and session.token, "pivoice connected with the API key, not a token"
            self.standin.wait_for(lambda: session.replies_started, 40, f"an answer in {self.release}")
            self.wait_status(IDLE, 40)
            time.sleep(0.3)
        finally:
            rec.stop()
        return session, rec

    def dropin(self, name: str, text: str | None) -> None:
        """Add (or with None remove) a drop-in, then daemon-reload."""
        path = self.c.root / DROPINS.lstrip("/") / name
        if text is None:
            path.unlink(missing_ok=True)
        else:
            self.c.write(f"{DROPINS}/{name}", text)
        self.c.systemctl("daemon-reload")

    def edit_config(self, old: str, new: str) -> None:
        cfg = self.c.root / "etc/pivoice/pivoice.toml"
        text = cfg.read_text()
        assert old in text, old
        cfg.write_text(text.replace(old, new))


def sound_card(runtime: Path, socket: Path) -> SoundCard:
    """A virtual sound card the service's user can reach: its socket where the container sees it, and
    anonymous access (the user has no PulseAudio cookie)."""
    runtime.mkdir(parents=True, exist_ok=True)
    socket.parent.mkdir(parents=True, exist_ok=True)
    socket.parent.chmod(0o755)
    card = SoundCard(runtime).start()
    card._pactl("load-module", "module-native-protocol-unix", f"socket={socket}", "auth-anonymous=1")
    socket.chmod(0o666)
    return card


def copy_tree(files: list[str], src: Path, dest: Path) -> None:
    """Copy these files (paths relative to src) to dest: a checkout as a person would have it."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, target)


def source_files(repo: Path) -> list[str]:
    """This checkout's files as they are now (tracked and new, not ignored): what install.sh installs."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout
    return [f for f in out.decode().split("\0") if f and (repo / f).is_file()]


def remove_tree(path: Path) -> None:
    """rm -rf that stays on one file system (never follows a mount left behind into the host's files)."""
    if path.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def require_root() -> str | None:
    if os.geteuid() != 0:
        return "the container tests need root (systemd-nspawn, mmdebstrap); CI runs as root"
    missing = missing_tools()
    if missing:
        return f"{', '.join(missing)} missing: bash scripts/setup.sh --dev installs them"
    return None
