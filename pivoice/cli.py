"""`pivoice run` (the daemon, in the foreground), `check` (every piece it needs, tried), `devices` and
`test-mic` (for setting up the sound), and `token-service` (the household's key service).

Exit codes (sysexits.h): 0 stopped by SIGINT/SIGTERM or check passed; 78 configuration error (config
file, key, wake model, unknown device name): restarting will not help; 70 an internal error (a bug:
please report it with the log). A device that is absent or busy is waited for, not an exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from . import __version__, configfile, logs
from .errors import EX_OK, EX_SOFTWARE, UserError

log = logging.getLogger("pivoice")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pivoice", description="Voice assistant daemon: wake word -> Gemini Live API.")
    p.add_argument("--version", action="version", version=f"pivoice {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("run", "run the assistant in the foreground (what the systemd service runs)"),
        ("check", "check the config file, the API key, the wake-word models, the sound devices and GPIO, then exit"),
        ("devices", "list the sound cards and devices, what each accepts, and which ones the config picks"),
        ("test-mic", "show the microphone's level live, then say whether it is right (no API key needed)"),
        ("test-speaker", "play a tone and each earcon through the speaker, at the volume pivoice keeps"),
        ("test-wake", "show the wake-word scores live (or of a WAV file), with the threshold and detections"),
    ):
        c = sub.add_parser(name, help=help_text, description=help_text)
        c.add_argument("--config", type=Path, default=None,
                       help=f"config file (default {configfile.DEFAULT_PATH}; built-in defaults when it is absent)")
        if name in ("test-mic", "test-wake"):
            c.add_argument("--seconds", type=float, default=10.0 if name == "test-mic" else 15.0,
                           help="how long to listen (default %(default)g)")
        if name == "test-wake":
            c.add_argument("--file", type=Path, default=None, help="score this WAV file instead of the microphone")
        if name == "run":
            c.add_argument("--echo", action="store_true", help="no Gemini: after the wake word, play back what was "
                           "heard (checks microphone, wake word, speaker, LEDs and buttons without a key)")
        if name == "check":
            c.add_argument("--online", action="store_true", help="also open a Live API session (with "
                           "live.token_url: with a token from the key service)")
    t = sub.add_parser("token-service", help="the household's key service: gives speakers tokens instead of the key",
                       description="Run the key service (what pivoice-tokens.service runs), or add a speaker.")
    t.add_argument("action", nargs="?", choices=["run", "add-device"], default="run")
    t.add_argument("name", nargs="?", help="add-device: the speaker's name (letters, digits, '.', '_', '-')")
    t.add_argument("--config", type=Path, default=None,
                   help="config file (default /etc/pivoice/tokens.toml; built-in defaults when it is absent)")
    return p


def _prepare(args: argparse.Namespace):
    from .credentials import ApiKey, DeviceSecret, find_api_key, find_device_secret
    from .live.models import KNOWN, lookup
    from .wake.detector import resolve_models

    settings = configfile.load(args.config)
    logs.set_level(settings.log.level)
    log.info("pivoice %s, config: %s", __version__, settings.source)
    if lookup(settings.live.model) is None:
        log.warning("live.model '%s' is not one pivoice knows (it knows %s): its [live] settings are sent as "
                    "written, and the Live API refuses those the model does not take", settings.live.model,
                    ", ".join(KNOWN))
    key: ApiKey | DeviceSecret
    if settings.live.token_url:
        key = find_device_secret(settings.live.device_secret_file)
        if settings.live.token_url.startswith("https:"):
            from .live.tokens import tls_context  # (imported only by a speaker that uses tokens)

            tls_context(settings.live.token_ca_file)  # a CA file that cannot be used: said now, not at a wake word
        logs.register_secret(key.value)
        log.info("tokens from the key service %s; device secret from %s", settings.live.token_url, key.source)
    else:
        key = find_api_key(settings.live.api_key_file)
        logs.register_secret(key.value)
        log.info("API key from %s", key.source)
    return settings, key, resolve_models(settings.wake.models)


async def _run(settings, key, models) -> None:
    from .daemon import build

    await build(settings, key, models).run()


async def _online(settings, key) -> str:
    """`check --online`: a token from the key service (with live.token_url), then one Live API session opened
    and closed. What worked, in words; a UserError says what did not."""
    import time

    from .credentials import DeviceSecret
    from .errors import UnavailableError
    from .live import tokens
    from .live.failures import SessionError, classify
    from .live.setup import connect_config, make_client

    said = ""
    try:
        if isinstance(key, DeviceSecret):
            token = await asyncio.to_thread(tokens.fetch, settings.live.token_url, key, settings.live.token_ca_file)
            said = f"the key service gave a token ({token.uses_left} uses); "
            client = make_client(token.name, settings.live, api_version="v1alpha")
        else:
            client = make_client(key.value, settings.live)
        started = time.monotonic()
        cm = client.aio.live.connect(model=settings.live.model, config=connect_config(settings.live, settings.vad))
        try:
            async with asyncio.timeout(settings.live.connect_timeout_seconds):
                await cm.__aenter__()
        except Exception as e:  # noqa: BLE001 - every failure becomes one clear reason
            raise classify(e, settings.live, token=bool(said)) from None
        await cm.__aexit__(None, None, None)
    except SessionError as e:
        raise UnavailableError(f"online check failed: {said}{e}") from None
    return (f"OK online: {said}the Live API opened a session with live.model '{settings.live.model}' in "
            f"{(time.monotonic() - started) * 1000:.0f} ms")


def _token_service(args: argparse.Namespace) -> int:
    from .keyservice import devices, service
    from .keyservice.settings import DEFAULT_PATH, KeyServiceSettings

    settings = configfile.load_as(KeyServiceSettings, args.config, DEFAULT_PATH)
    logs.set_level(settings.log.level)
    if args.action == "add-device":
        if not args.name:
            raise UserError("usage: pivoice token-service add-device NAME")
        path = Path(settings.service.devices_file)
        secret = devices.add(path, args.name)
        print(f"Added '{args.name}' to {path}. Its device secret, shown only now:\n\n    {secret}\n\n"
              f"On that speaker: put it in /etc/pivoice/device-secret (root, chmod 600), set live.token_url, and "
              f"restart pivoice. Here: sudo systemctl reload pivoice-tokens")
        return EX_OK
    log.info("pivoice %s key service, config: %s", __version__, settings.source)
    asyncio.run(service.serve(settings))
    log.info("stopped")
    return EX_OK


def _diagnose(args: argparse.Namespace) -> int:
    settings = configfile.load(args.config)
    logs.set_level("debug" if settings.log.level == "debug" else "warning")  # the report says what was opened
    if args.command == "devices":
        from .diagnose.devices import report

        print(report(settings))
        return EX_OK
    if args.command == "test-speaker":
        from .diagnose import testspeaker

        return testspeaker.run(settings)
    if args.command == "test-wake":
        from .diagnose import testwake

        return testwake.run(settings, args.file, max(1.0, args.seconds))
    from .diagnose import testmic

    return testmic.run(settings, max(1.0, args.seconds))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup("info")
    try:
        if args.command == "token-service":
            return _token_service(args)
        if args.command in ("devices", "test-mic", "test-speaker", "test-wake"):
            return _diagnose(args)
        if args.command == "check":
            from .diagnose import check

            return check.run(args, _online)
        if args.echo:
            from .wake.detector import resolve_models

            settings = configfile.load(args.config)
            logs.set_level(settings.log.level)
            log.info("pivoice %s, config: %s; echo mode: no API key used", __version__, settings.source)
            asyncio.run(_run(settings, None, resolve_models(settings.wake.models)))
            log.info("stopped")
            return EX_OK
        settings, key, models = _prepare(args)
        asyncio.run(_run(settings, key, models))
        log.info("stopped")
        return EX_OK
    except UserError as e:
        log.error("%s", e.message)
        return e.exit_code
    except KeyboardInterrupt:
        return EX_OK
    except Exception:  # a bug: one line in the log, with where it happened
        log.exception("internal error (please report this with the log)")
        return EX_SOFTWARE
