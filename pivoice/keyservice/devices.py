"""Device secrets and the rate limit per device.

The devices file has one line per speaker, `NAME sha256:HEX`: the SHA-256 of its secret, never the secret
(a secret is 32 random bytes, so a plain hash cannot be reversed by guessing). `add` appends a line and
returns the new secret, to be printed once; revoking is deleting the line and `systemctl reload
pivoice-tokens`. Lines starting with '#' are comments.
"""

from __future__ import annotations

import grp
import hashlib
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

SERVICE_GROUP = "pivoice-tokens"  # the group pivoice-tokens.service runs as
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def digest(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def load(path: Path) -> dict[str, str]:
    """digest -> device name, from the devices file. A ConfigError names the line that is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the devices file {path}: {getattr(e, 'strerror', None) or e}") from None
    book: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not _NAME.fullmatch(parts[0]) or not re.fullmatch(r"sha256:[0-9a-f]{64}", parts[1]):
            raise ConfigError(f"{path} line {n} is not 'NAME sha256:HEX' (add devices with "
                              f"`pivoice token-service add-device NAME`)")
        if parts[0] in book.values():
            raise ConfigError(f"{path} line {n}: the device name '{parts[0]}' is there twice")
        book[parts[1]] = parts[0]
    return book


def add(path: Path, name: str) -> str:
    """A new secret for device `name`, its hash appended to the devices file (written atomically, keeping
    the file's owner and mode). The secret itself is stored nowhere."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"'{name}' cannot be a device name: use letters, digits, '.', '_' and '-' (at most 64)")
    book = load(path)
    if name in book.values():
        raise ConfigError(f"a device named '{name}' is already in {path}: remove its line first to replace it")
    secret = secrets.token_urlsafe(32)
    old = path.read_text(encoding="utf-8") if path.exists() else (
        "# pivoice key service: one line per speaker, NAME sha256:HEX. Delete a line and run\n"
        "# `systemctl reload pivoice-tokens` to revoke that speaker.\n")
    st = path.stat() if path.exists() else None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".devices-")
    except OSError as e:
        raise ConfigError(f"cannot write the devices file {path} ({e.strerror or e}): run add-device as root "
                          f"(sudo), with the directory there") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(old + ("" if old.endswith("\n") or not old else "\n") + f"{name} {digest(secret)}\n")
            f.flush()
            os.fsync(f.fileno())
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o777)
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        else:  # a new file: readable by the service's group when there is one (install-token-service.sh's)
            os.chmod(tmp, 0o640)
            if os.geteuid() == 0:
                try:
                    os.chown(tmp, 0, grp.getgrnam(SERVICE_GROUP).gr_gid)
                except KeyError:
                    pass
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return secret


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimit:
    """Per device: `burst` requests at once, refilled at `per_hour` an hour (a token bucket)."""

    def __init__(self, burst: int, per_hour: float, clock=time.monotonic):
        self.burst, self.rate, self._clock = burst, per_hour / 3600.0, clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, device: str) -> float:
        """0 when the request may go ahead (and counts it); else the seconds until one may."""
        now = self._clock()
        b = self._buckets.setdefault(device, _Bucket(float(self.burst), now))
        b.tokens = min(float(self.burst), b.tokens + (now - b.at) * self.rate)
        b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate
