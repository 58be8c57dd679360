"""What scripts/arm64-check.sh runs on the host (x86_64) and in the arm64 roots (qemu user-mode emulation).

    python tests/arm64_probe.py cpuinfo pi4|pi5            an arm64 /proc/cpuinfo as that Pi's kernel shows it
    python tests/arm64_probe.py clips DIR                  the wake-engine inputs, as raw 16 kHz s16le files
    python tests/arm64_probe.py scores DIR OUT.json        pivoice's wake engine on each DIR/*.raw -> scores
    python tests/arm64_probe.py compare A.json B.json TOL  max |A - B| per clip and model; exit 1 above TOL
    python tests/arm64_probe.py board pi4|pi5              gpiozero's pi_info() from /proc: the Pi it sees
    python tests/arm64_probe.py footprint OUT.json [RUNS]  the daemon's import time and RSS, start to READY=1
    python tests/arm64_probe.py ratio X86.json ARM64.json  the footprint of both, and arm64 / x86
    python tests/arm64_probe.py extra NAME                 pyproject.toml's extra NAME, one a line (exit 1: none)
    python -m pytest -p arm64_probe ...                    (with tests/ on PYTHONPATH) leaves out the tests
                                                           that need a sound server or take minutes emulated

The clips are made once, on the host, and copied into the roots, so the two engines get the same bytes.
Only the standard library is imported at the top: `cpuinfo` and `compare` run on a bare host python3.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

MODELS = ("hey_jarvis", "alexa")

# The Pis' own /proc/cpuinfo (64-bit Raspberry Pi OS kernel): per core the ARM ids LiteRT's XNNPACK reads
# (through the cpuinfo library), then the board lines gpiozero reads. c03115: Pi 4B rev 1.5, 4 GB;
# d04170: Pi 5B rev 1.0, 8 GB.
BOARDS = {
    "pi4": {"features": "fp asimd evtstrm crc32 cpuid", "variant": "0x0", "part": "0xd08", "cpurev": 3,
            "revision": "c03115", "model": "Raspberry Pi 4 Model B Rev 1.5", "gpiozero": "4B", "soc": "BCM2711"},
    "pi5": {"features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
                        "dcpop asimddp", "variant": "0x4", "part": "0xd0b", "cpurev": 1,
            "revision": "d04170", "model": "Raspberry Pi 5 Model B Rev 1.0", "gpiozero": "5B", "soc": "BCM2712"},
}

# Left out of the arm64 test run (`pytest -p arm64_probe tests/`): what needs a sound server (PulseAudio)
# or journald, which the roots do not run; what takes many minutes emulated; and checks of files that read
# the same on any machine (lint, the unit file through systemd-analyze, which the roots do not have).
NEEDS_SOUND_SERVER = {"soundcard"}
LEFT_OUT_FILES = {
    "test_aec.py": "the echo canceller's DSP on numpy: about 15 min emulated",
    "test_harness.py": "starts PulseAudio",
    "test_repo.py": "lint and repository checks: the same on any machine",
    "test_systemd.py": "boots systemd in containers (systemd-nspawn): runs on the x86 host",
    "test_tokens.py": "the key service and speakers as processes, slow emulated; all pure Python (uvicorn)",
    "test_diagnose.py": "the set-up commands as processes, slow emulated (`pivoice check` is a step of its own)",
}
LEFT_OUT = {
    "test_a_microphone_that_appears_later_is_listened_to": "starts PulseAudio",
    "test_without_journald_the_log_falls_back_to_stderr": "runs journald's tools",
    "test_unit_verifies_cleanly": "systemd-analyze",
    "test_unit_exposure_is_at_most_2": "systemd-analyze",
    "test_detections_match_pyopen_wakeword": "about 15 min emulated; `scores`/`compare` check the engine against x86",
    "test_unrelated_speech_in_noise_never_scores_near_threshold": "60 s of audio: about 5 min emulated",
    "test_a_minute_without_the_wake_word_opens_no_session": "a minute of audio: about 5 min emulated",
    "test_an_alarm_kept_from_before_rings_at_the_speaker_pcm": "pivoice as a process ringing for 10 s: slow emulated",
    "test_devices_at_another_rate_in_stereo_hear_and_speak_right": "two conversations of the daemon: slow emulated "
                                                                   "(test_every_sample_format_converts_both_ways "
                                                                   "runs the same conversions)",
    "test_input_channel_listens_to_one_channel_only": "a conversation of the daemon: slow emulated",
    "test_in_the_daemon_the_wake_word_is_heard_and_the_live_api_gets_the_voice_with_less_noise":
        "two conversations of the daemon: slow emulated (the processing itself is tested in the same file)",
    "test_the_detector_hears_the_microphone_before_noise_suppression": "a conversation of the daemon: slow emulated",
    "test_no_builtin_earcon_sounds_like_any_wake_word": "four models on the earcons: the wake-word engine is "
                                                        "compared with x86 by its own step",
    # (a test id with its parameter leaves out that case only)
    "test_looking_ahead_half_a_chunk_decides_no_later_and_changes_no_chunk_score[unrelated]":
        "the unrelated speech is decoded with sox, which the arm64 roots do not install (the other clips run)",
}


def cpuinfo(board: str) -> str:
    b = BOARDS[board]
    cores = "".join(
        f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {b['features']}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {b['variant']}\nCPU part\t: {b['part']}\n"
        f"CPU revision\t: {b['cpurev']}\n\n" for n in range(4))
    return cores + f"Revision\t: {b['revision']}\nSerial\t\t: 100000000badc0de\nModel\t\t: {b['model']}\n"


def clips(out: Path) -> None:
    """Speech from tests/clips with leading silence and some noise (as tests/test_wake.py), one file each."""
    import wave

    import numpy as np

    def wav(name: str) -> bytes:
        with wave.open(str(Path(__file__).parent / "clips" / name)) as w:
            assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (16000, 2, 1)
            return w.readframes(w.getnframes())

    def silence(seconds: float) -> bytes:
        return b"\0\0" * int(seconds * 16000)

    def noisy(pcm: bytes, snr_db: float, seed: int = 7) -> bytes:
        x = np.frombuffer(pcm, "<i2").astype(np.float64)
        speech_rms = np.sqrt(np.mean(x[np.abs(x) > 100] ** 2))
        noise = np.random.default_rng(seed).normal(0, speech_rms / 10 ** (snr_db / 20), x.size)
        return np.clip(x + noise, -32768, 32767).astype("<i2").tobytes()

    out.mkdir(parents=True, exist_ok=True)
    cases = {
        "wake": silence(1.0) + wav("hey_jarvis.wav") + silence(0.15) + wav("command_time_tokyo.wav"),
        "wake_rp_noisy": noisy(silence(1.0) + wav("hey_jarvis_rp.wav") + silence(1.0), snr_db=20),
        "noise": np.random.default_rng(11).normal(0, 300, 16000 * 2).astype("<i2").tobytes(),
    }
    for name, pcm in cases.items():
        (out / f"{name}.raw").write_bytes(pcm)


def scores(clip_dir: Path, out: Path) -> None:
    import time

    import numpy as np

    from pivoice.wake.openwakeword import OpenWakeWordEngine, builtin_models_dir

    result: dict[str, dict[str, list[float]]] = {}
    t0 = time.monotonic()
    engine = OpenWakeWordEngine({m: builtin_models_dir() / f"{m}.tflite" for m in MODELS})
    print(f"models loaded in {time.monotonic() - t0:.1f} s")
    seconds = 0.0
    for raw in sorted(clip_dir.glob("*.raw")):
        engine.reset()  # as a fresh engine (tests/test_wake.py checks that it is)
        pcm = raw.read_bytes()
        seconds += len(pcm) / 32000
        chunks = []
        for i in range(0, len(pcm), 3000):  # uneven pieces, as capture periods arrive (as tests/test_wake.py)
            chunks += engine.process(pcm[i : i + 3000])
        result[raw.stem] = {m: [float(c[m]) for c in chunks] for m in MODELS}
        peak = {m: round(float(np.max(result[raw.stem][m])), 3) for m in MODELS}
        print(f"{raw.stem}: {len(chunks)} scores, peaks {peak}")
    out.write_text(json.dumps(result))
    print(f"{seconds:.1f} s of audio scored in {time.monotonic() - t0:.1f} s")


def compare(a_path: Path, b_path: Path, tolerance: float) -> int:
    a, b = json.loads(a_path.read_text()), json.loads(b_path.read_text())
    bad = []
    if sorted(a) != sorted(b):
        bad.append(f"different clips: {sorted(a)} vs {sorted(b)}")
    for clip in sorted(set(a) & set(b)):
        for model in MODELS:
            x, y = a[clip][model], b[clip][model]
            if len(x) != len(y):
                bad.append(f"{clip}/{model}: {len(x)} scores vs {len(y)}")
                continue
            diff = max(abs(p - q) for p, q in zip(x, y, strict=True))
            print(f"{clip:>14} {model:>10}: max |x86 - arm64| = {diff:.1e} (peak {max(x):.3f} / {max(y):.3f})")
            if diff > tolerance:
                bad.append(f"{clip}/{model}: scores differ by up to {diff:.2e} (more than {tolerance:g})")
        if clip.startswith("wake") and max(b[clip]["hey_jarvis"]) < 0.9:
            bad.append(f"{clip}: 'hey jarvis' scored only {max(b[clip]['hey_jarvis']):.3f} on arm64")
    for line in bad:
        print(f"MISMATCH: {line}")
    return 1 if bad else 0


def board(expected: str) -> int:
    """gpiozero's own detection (gpiozero.pins.local.get_pi_revision: /proc/device-tree, then /proc/cpuinfo)
    through pi_info(), on a LocalPiFactory: the base of the lgpio, RPi.GPIO and native factories, minus
    the GPIO chip that a root under emulation does not have."""
    import warnings

    from gpiozero import Device, pi_info
    from gpiozero.pins.local import LocalPiFactory

    class BoardOnly(LocalPiFactory):
        pass

    Device.pin_factory = BoardOnly()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pi_info() is deprecated in favour of board_info: the same lookup
        try:
            info = pi_info()
        except Exception as e:
            print(f"gpiozero found no Pi: {type(e).__name__}: {e}")
            return 1
    want = BOARDS[expected]
    print(f"gpiozero: Raspberry Pi {info.model} rev {info.pcb_revision} (revision {info.revision}, {info.soc}, "
          f"{info.memory} MB)")
    if (info.model, info.soc) != (want["gpiozero"], want["soc"]):
        print(f"expected a {want['gpiozero']} with a {want['soc']}")
        return 1
    return 0


def footprint(out: Path, runs: int) -> None:
    """`pivoice run` (file-plugin ALSA devices, a NOTIFY_SOCKET): seconds from spawn to READY=1, the sum of
    `-X importtime` self times up to READY=1, and VmRSS / VmHWM 3 s after READY=1. Medians of `runs`."""
    import os
    import re
    import signal
    import socket
    import statistics
    import subprocess
    import tempfile
    import threading
    import time

    rows = []
    with tempfile.TemporaryDirectory(prefix="pivoice-footprint-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "silence.raw").write_bytes(b"\0" * 32000 * 10)
        (tmp / ".asoundrc").write_text(
            f'pcm.mic {{ type file  slave.pcm "null"  file "/dev/null"  infile "{tmp}/silence.raw"  format "raw" }}\n'
            'pcm.spk { type file  slave.pcm "null"  file "/dev/null"  format "raw" }\n')
        (tmp / "pivoice.toml").write_text('[audio]\ninput_device = "mic"\noutput_device = "spk"\n'
                                          '[live]\nbase_url = "https://127.0.0.1:9"\n[log]\nlevel = "debug"\n')
        for n in range(runs):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(tmp / f"notify{n}"))
            sock.settimeout(1)
            env = {**os.environ, "HOME": str(tmp), "NOTIFY_SOCKET": str(tmp / f"notify{n}"),
                   "GEMINI_API_KEY": "AIzaFAKE-arm64-footprint", "PYTHONUNBUFFERED": "1"}
            t0 = time.monotonic()
            p = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "pivoice", "run", "--config",
                                  str(tmp / "pivoice.toml")], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
            lines: list[str] = []
            reader = threading.Thread(target=lines.extend, args=(p.stdout,), daemon=True)
            reader.start()
            while True:
                try:
                    if b"READY=1" in sock.recv(4096):
                        break
                except TimeoutError:
                    if p.poll() is not None or time.monotonic() - t0 > 300:
                        p.kill()
                        reader.join(5)
                        raise SystemExit("pivoice never sent READY=1:\n" + "".join(lines[-20:])) from None
            ready = time.monotonic() - t0
            time.sleep(3)
            status = Path(f"/proc/{p.pid}/status").read_text()
            mem = {k: int(re.search(rf"{k}:\s+(\d+) kB", status).group(1)) / 1024 for k in ("VmRSS", "VmHWM")}
            p.send_signal(signal.SIGTERM)
            p.wait(120)
            reader.join(5)
            sock.close()
            imports = sum(int(m.group(1)) for m in (re.search(r"import time:\s+(\d+) \|", x) for x in lines) if m)
            rows.append({"ready_s": ready, "imports_s": imports / 1e6, **{f"{k}_mib": v for k, v in mem.items()}})
            print(f"run {n + 1}: READY=1 after {ready:.2f} s, imports {imports / 1e6:.2f} s, "
                  f"RSS {mem['VmRSS']:.0f} MiB (peak {mem['VmHWM']:.0f})")
    # The interpreter alone, for scale (under emulation: what qemu itself adds to any process).
    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    time.sleep(3)
    status = Path(f"/proc/{bare.pid}/status").read_text()
    bare.kill()
    bare.wait()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med["python_rss_mib"] = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024
    out.write_text(json.dumps({"runs": rows, "median": med}))


def ratio(x86_path: Path, arm_path: Path) -> None:
    x, a = (json.loads(p.read_text())["median"] for p in (x86_path, arm_path))
    rows = (("imports_s", "imports (s)"), ("ready_s", "start to READY=1 (s)"), ("VmRSS_mib", "RSS (MiB)"),
            ("VmHWM_mib", "peak RSS (MiB)"), ("python_rss_mib", "python alone RSS (MiB)"))
    print(f"{'medians of 3':<24}{'x86_64':>9}{'arm64':>9}{'arm64/x86':>11}")
    for key, label in rows:
        print(f"{label:<24}{x[key]:>9.2f}{a[key]:>9.2f}{a[key] / x[key]:>11.2f}")
    print(", ".join(f"{label.split(' (')[0]} {a[key] / x[key]:.2f}x" for key, label in rows[:3]) + " (arm64 / x86)")


def requirements(extras: dict[str, list[str]], name: str, project: str) -> list[str]:
    """Extra `name`'s requirements, one per line for `pip install -r`, with the project's own extras it
    names ("pivoice[tokens]") replaced by theirs: pip would look for pivoice itself on PyPI."""
    out: list[str] = []
    for req in extras[name]:
        m = re.fullmatch(rf"{re.escape(project)}\[([\w,\s-]+)\]", req.split("#")[0].strip())
        if m is None:
            out.append(req)
            continue
        for inner in m.group(1).split(","):
            out += [r for r in requirements(extras, inner.strip(), project) if r not in out]
    return out


def pytest_collection_modifyitems(config, items):
    """Plugin hook (-p arm64_probe): leave out what the arm64 roots cannot run or need not (above)."""
    keep, drop = [], []
    for item in items:
        left_out = (item.path.name in LEFT_OUT_FILES or item.name.split("[")[0] in LEFT_OUT or item.name in LEFT_OUT
                    or NEEDS_SOUND_SERVER & set(getattr(item, "fixturenames", ())))
        (drop if left_out else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "cpuinfo":
        sys.stdout.write(cpuinfo(args[0]))
    elif cmd == "clips":
        clips(Path(args[0]))
    elif cmd == "scores":
        scores(Path(args[0]), Path(args[1]))
    elif cmd == "compare":
        return compare(Path(args[0]), Path(args[1]), float(args[2]))
    elif cmd == "board":
        return board(args[0])
    elif cmd == "ratio":
        ratio(Path(args[0]), Path(args[1]))
    elif cmd == "extra":
        import tomllib

        with open(Path(__file__).parent.parent / "pyproject.toml", "rb") as f:
            project = tomllib.load(f)["project"]
        extras = project.get("optional-dependencies", {})
        if args[0] not in extras:
            return 1
        print("\n".join(requirements(extras, args[0], project["name"])))
    elif cmd == "footprint":
        footprint(Path(args[0]), int(args[1]) if len(args) > 1 else 3)
    else:
        print(__doc__, file=sys.stderr)
        return 64
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
