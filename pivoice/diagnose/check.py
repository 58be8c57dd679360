"""`pivoice check [--online]`: every piece pivoice needs, tried as `run` would, one line each, fine or not.

The config comes first: when it cannot be read nothing else can be checked (one error, exit 78). Then
the API key (or device secret), the wake-word models (loaded in LiteRT), the microphone and the speaker
(opened in a format they take, then closed), automatic gain and noise suppression (made, when on), the
GPIO pins (created, then released), the earcons' WAV files (read) and, with --online, one Live API
session. Each failing piece is one ERROR line naming it; the exit status is that of the first failure
(78 for what a config change fixes, 69 for what is absent or busy now), 0 when all is fine.
"""

from __future__ import annotations

import asyncio
import logging
from argparse import Namespace
from collections.abc import Callable
from typing import Any

from .. import config, configfile, logs
from ..errors import EX_OK, DeviceError, UserError

log = logging.getLogger("pivoice")


def _key(settings: config.Settings) -> tuple[Any, str]:
    from ..credentials import find_api_key, find_device_secret

    if settings.live.token_url:
        from ..live.tokens import tls_context

        secret = find_device_secret(settings.live.device_secret_file)
        logs.register_secret(secret.value)
        if settings.live.token_url.startswith("https:"):
            tls_context(settings.live.token_ca_file)
        return secret, f"from {secret.source}; tokens from {settings.live.token_url}"
    key = find_api_key(settings.live.api_key_file)
    logs.register_secret(key.value)
    return key, f"from {key.source}"


def _wake(settings: config.Settings) -> str:
    from ..wake.detector import load_engine, resolve_models

    load_engine(resolve_models(settings.wake.models))
    return f"{', '.join(settings.wake.models)} (loaded, threshold {settings.wake.threshold:g})"


def _device(settings: config.Settings, kind: str) -> str:
    from ..audio.device import Opener, wants

    capture_want, playback_want, _ = wants(settings.audio)
    key = "audio.input_device" if kind == "capture" else "audio.output_device"
    device = settings.audio.input_device if kind == "capture" else settings.audio.output_device
    try:
        pcm, got = Opener(kind, device, key, capture_want if kind == "capture" else playback_want).open()
    except DeviceError as e:
        if "is busy" in e.message and _service_running():
            return f"'{device}' is in use by the running pivoice service (stop it to check the device itself)"
        raise
    pcm.close()
    return f"'{device}' opened: {got.describe()}"


def _service_running() -> bool:
    import shutil
    import subprocess

    if shutil.which("systemctl") is None:
        return False
    return subprocess.run(["systemctl", "is-active", "--quiet", "pivoice"], timeout=10).returncode == 0


def _gpio(settings: config.Settings) -> str:
    from ..errors import DeviceError
    from ..gpio import Gpio

    g = Gpio(settings.gpio, assistant=None)
    quiet = logging.getLogger("pivoice.gpio")
    level, quiet.level = quiet.level, logging.CRITICAL  # its problem is this check's one line
    try:
        problem = g.open()
        g.close()
    finally:
        quiet.setLevel(level)
    if problem:
        raise DeviceError(problem)
    return "in use: " + ", ".join(p for p in (
        g.settings.led != "none" and f"{g.settings.led} LED on GPIO{','.join(map(str, g.settings.led_pins))}",
        g.settings.button_pin is not None and f"button on GPIO{g.settings.button_pin}",
        g.settings.mute_pin is not None and f"mute button on GPIO{g.settings.mute_pin}") if p) \
        if g.available else "none configured"


def _noise(settings: config.Settings) -> str:
    from importlib.metadata import PackageNotFoundError, version

    from ..audio import noise

    a = settings.audio
    if noise.make(a.noise_suppression, a.auto_gain_dbfs) == (None, None):
        return "off"
    try:
        package = f"{noise.PACKAGE} {version(noise.PACKAGE)}"
    except PackageNotFoundError:  # importable, but not installed by pip (a copy on the path)
        package = noise.PACKAGE
    return (f"automatic gain {f'target -{a.auto_gain_dbfs} dBFS' if a.auto_gain_dbfs else 'off'}, noise "
            f"suppression {a.noise_suppression or 'off'} ({package})")


def _earcons(settings: config.Settings) -> str:
    from ..earcons import NAMES, Earcons

    e = settings.earcons
    if not e.enabled:
        return "off"
    Earcons(e, playback=None)  # the WAV files read, as at start
    files = [f"{n} {getattr(e, n)}" for n in NAMES if getattr(e, n)]
    return f"volume {e.volume:g}; " + (f"from files: {', '.join(files)}" if files else "the built-in ones")


def run(args: Namespace, online: Callable[[Any, Any], Any]) -> int:
    """`online(settings, key)`: the coroutine of the --online session (cli.py)."""
    settings = configfile.load(args.config)  # a config that cannot be read stops here (cli.py: exit 78)
    logs.set_level(settings.log.level)
    what = "device secret" if settings.live.token_url else "API key"
    rows: list[tuple[str, str, UserError | None]] = []
    key: Any = None

    def piece(name: str, fn: Callable[[], str]) -> None:
        try:
            rows.append((name, fn(), None))
        except UserError as e:
            log.error("%s: %s", name, e.message)
            rows.append((name, e.message, e))

    def take_key() -> str:
        nonlocal key
        key, said = _key(settings)
        return said

    piece(what, take_key)
    piece("wake words", lambda: _wake(settings))
    piece("microphone", lambda: _device(settings, "capture"))
    piece("speaker", lambda: _device(settings, "playback"))
    piece("gain and noise", lambda: _noise(settings))
    piece("GPIO", lambda: _gpio(settings))
    piece("earcons", lambda: _earcons(settings))
    if args.online and key is not None:
        piece("Live API", lambda: asyncio.run(online(settings, key)))
    print(f"pivoice check, config {settings.source}:")
    for name, said, error in rows:
        print(f"  {'FAIL' if error else 'ok':<5} {name}: {said}")
    failed = [(name, error) for name, _, error in rows if error is not None]
    if failed:
        print(f"NOT OK: {', '.join(name for name, _ in failed)} (see above)")
        return failed[0][1].exit_code
    source = next(said for name, said, _ in rows if name == what).removeprefix("from ").split(";")[0]
    print(f"OK: config {settings.source}, {what} from {source}, wake words {', '.join(settings.wake.models)}")
    return EX_OK
