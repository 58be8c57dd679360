"""`pivoice run` (the daemon, in the foreground) and `pivoice check` (validate the setup, then exit).

Exit codes (sysexits.h): 0 stopped by SIGINT/SIGTERM or check passed; 78 configuration error (config
file, key, wake model, unknown device name): restarting will not help; 70 an internal error (a bug:
please report it with the log). A device that is absent or busy is waited for, not an exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from . import __version__, config, logs
from .errors import EX_OK, EX_SOFTWARE, UserError

log = logging.getLogger("pivoice")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pivoice", description="Voice assistant daemon: wake word -> Gemini Live API.")
    p.add_argument("--version", action="version", version=f"pivoice {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("run", "run the assistant in the foreground (what the systemd service runs)"),
        ("check", "check the config file, the API key and the wake-word models, then exit"),
    ):
        c = sub.add_parser(name, help=help_text, description=help_text)
        c.add_argument("--config", type=Path, default=None,
                       help=f"config file (default {config.DEFAULT_PATH}; built-in defaults when it is absent)")
    return p


def _prepare(args: argparse.Namespace):
    from .credentials import find_api_key
    from .live.models import KNOWN, lookup
    from .wake.detector import load_engine, resolve_models

    settings = config.load(args.config)
    logs.set_level(settings.log.level)
    log.info("pivoice %s, config: %s", __version__, settings.source)
    if lookup(settings.live.model) is None:
        log.warning("live.model '%s' is not one pivoice knows (it knows %s): its [live] settings are sent as "
                    "written, and the Live API refuses those the model does not take", settings.live.model,
                    ", ".join(KNOWN))
    key = find_api_key(settings.live.api_key_file)
    logs.register_secret(key.value)
    log.info("API key from %s", key.source)
    models = resolve_models(settings.wake.models)
    if args.command == "check":
        load_engine(models)  # loaded in LiteRT and their shapes checked, as `run` will
    return settings, key, models


async def _run(settings, key, models) -> None:
    from .daemon import build

    await build(settings, key, models).run()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup("info")
    try:
        settings, key, models = _prepare(args)
        if args.command == "check":
            print(f"OK: config {settings.source}, API key from {key.source}, "
                  f"wake words {', '.join(settings.wake.models)}")
            return EX_OK
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
