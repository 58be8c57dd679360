"""Errors a user can act on: one line that names the problem and what to do, and an exit code."""

from __future__ import annotations

# sysexits.h: systemd's RestartPreventExitStatus= keeps EX_CONFIG from crash-looping.
EX_OK = 0
EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CONFIG = 78


class UserError(Exception):
    """Something the person who set pivoice up has to fix. Printed without a traceback."""

    exit_code = EX_SOFTWARE

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigError(UserError):
    """The configuration (file, key or credential) is wrong: restarting will not help."""

    exit_code = EX_CONFIG


class DeviceError(UserError):
    """An audio device that exists in the configuration could not be used right now."""

    exit_code = EX_UNAVAILABLE


class UnavailableError(UserError):
    """Something the service needs is not there now (a port in use); systemd tries again later."""

    exit_code = EX_UNAVAILABLE
