"""Where the Gemini API key comes from. The key itself is never logged, printed or put in a message.

Looked for in this order, first found wins:
1. the file named by `live.api_key_file` in the config;
2. the systemd credential `gemini-api-key` ($CREDENTIALS_DIRECTORY/gemini-api-key, from LoadCredential=);
3. the environment: GOOGLE_API_KEY, then GEMINI_API_KEY (the order google-genai itself uses).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

CREDENTIAL_NAME = "gemini-api-key"

HOW_TO = (
    "Give pivoice a Gemini API key in one of three ways: set GEMINI_API_KEY in the environment "
    "(foreground runs), name a key file with live.api_key_file in the config, or install it as the "
    f"systemd credential '{CREDENTIAL_NAME}' (LoadCredential={CREDENTIAL_NAME}:/etc/pivoice/api-key)."
)


@dataclass(frozen=True)
class ApiKey:
    value: str
    source: str  # where it came from, safe to log

    def __repr__(self) -> str:  # never show the value, even in a debugger or a traceback
        return f"ApiKey(source={self.source!r})"

    __str__ = __repr__


def _read_key_file(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist. {HOW_TO}") from None
    except PermissionError:
        raise ConfigError(
            f"cannot read {what} {path}: permission denied. Make it readable by the user pivoice runs as "
            f"(and by nobody else: chmod 600)."
        ) from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise ConfigError(f"{what} {path} is not a text file holding the key.") from None
    return clean_key(text, f"{what} {path}")


# Characters editors and copy-paste leave around a key: a byte-order mark, zero-width spaces and joiners.
_INVISIBLE = dict.fromkeys(map(ord, "\ufeff\u200b\u200c\u200d\u2060"))


def clean_key(text: str, where: str, what: str = "an API key", how_to: str = HOW_TO) -> str:
    """The key in `text`, without what cannot be part of one (surrounding white space, a byte-order mark,
    zero-width characters); a ConfigError naming `where` when what is left cannot be a key.

    Keys are sent in an HTTP header, which takes visible ASCII only: anything else would fail every
    conversation with an error about a header, long after `pivoice check` said the key was there."""
    key = text.translate(_INVISIBLE).strip()
    if not key:
        raise ConfigError(f"{where} is empty. {how_to}")
    if any(c.isspace() for c in key):
        raise ConfigError(f"{where} holds more than one word; it must hold only {what}.")
    for i, c in enumerate(key):
        if not "!" <= c <= "~":
            raise ConfigError(
                f"{where} holds a character that cannot be part of {what} (U+{ord(c):04X} at position "
                f"{i + 1}); it is letters, digits, '-' and '_'. Copy it again from where you got it."
            )
    return key


def find_api_key(api_key_file: str, environ: dict[str, str] | None = None) -> ApiKey:
    env = os.environ if environ is None else environ
    if api_key_file:
        path = Path(api_key_file)
        return ApiKey(_read_key_file(path, "live.api_key_file"), f"file {path}")
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / CREDENTIAL_NAME).exists():
        path = Path(cred_dir) / CREDENTIAL_NAME
        return ApiKey(_read_key_file(path, "systemd credential"), f"systemd credential {CREDENTIAL_NAME}")
    for var in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
        if env.get(var, "").translate(_INVISIBLE).strip():
            return ApiKey(clean_key(env[var], f"the environment variable {var}"), f"environment variable {var}")
    raise ConfigError(f"no Gemini API key found. {HOW_TO}")


# The device secret: with live.token_url set, the speaker holds this instead of an API key and trades it
# for ephemeral tokens at the household's key service (pivoice/live/tokens.py, imported only then).
DEVICE_SECRET_CREDENTIAL = "pivoice-device-secret"
DEVICE_SECRET_INSTALLED = Path("/etc/pivoice/device-secret")  # where install.sh puts it (`sudo pivoice check`)

DEVICE_SECRET_HOW_TO = (
    f"Give the speaker its device secret (printed once by `pivoice token-service add-device NAME` on the "
    f"key service's machine) as the systemd credential '{DEVICE_SECRET_CREDENTIAL}' "
    f"(LoadCredential={DEVICE_SECRET_CREDENTIAL}:/etc/pivoice/device-secret) or name the file with "
    f"live.device_secret_file.")


@dataclass(frozen=True)
class DeviceSecret:
    value: str = field(repr=False)
    source: str  # safe to log


def find_device_secret(secret_file: str, environ: dict[str, str] | None = None) -> DeviceSecret:
    env = os.environ if environ is None else environ
    how_to = DEVICE_SECRET_HOW_TO
    if secret_file:
        path, where = Path(secret_file), f"live.device_secret_file {secret_file}"
    else:
        cred_dir = env.get("CREDENTIALS_DIRECTORY", "")
        path = Path(cred_dir) / DEVICE_SECRET_CREDENTIAL
        where = f"systemd credential {DEVICE_SECRET_CREDENTIAL}"
        if not cred_dir or not path.exists():
            if not DEVICE_SECRET_INSTALLED.exists():  # (outside the service: root running `pivoice check`)
                raise ConfigError(f"live.token_url is set but no device secret was found. {how_to}")
            path, where = DEVICE_SECRET_INSTALLED, f"file {DEVICE_SECRET_INSTALLED}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist. {how_to}") from None
    except PermissionError:
        raise ConfigError(f"cannot read {where}: permission denied. Make it readable by the user pivoice "
                          f"runs as (and by nobody else: chmod 600).") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise ConfigError(f"{where} is not a text file holding the device secret.") from None
    return DeviceSecret(clean_key(text, where, what="a device secret", how_to=how_to), where)
