"""The key service's config file, /etc/pivoice/tokens.toml: every key is documented in config/tokens.toml."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from ..config import LogSettings, _Section
from ..live import models

DEFAULT_PATH = Path("/etc/pivoice/tokens.toml")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ServiceSettings(_Section):
    listen: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8443, ge=1, le=65535)
    tls_cert_file: str = ""
    tls_key_file: str = ""
    devices_file: str = "/etc/pivoice/devices"
    api_key_file: str = ""
    base_url: str = ""

    @model_validator(mode="after")
    def _tls_or_loopback(self) -> ServiceSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("service.tls_cert_file and service.tls_key_file go together: set both, or neither")
        if not self.tls_cert_file and self.listen not in LOOPBACK:
            raise ValueError(f"service.listen = '{self.listen}' without TLS would send device secrets and tokens "
                             f"over the network in the clear: set service.tls_cert_file and service.tls_key_file, "
                             f"or listen on 127.0.0.1 behind a reverse proxy that does TLS")
        return self


class TokenSettings(_Section):
    model: str = models.DEFAULT_MODEL  # locked; "" leaves the model to the speaker
    system_instruction: str = ""  # locked when set
    uses: int = Field(20, ge=2, le=1000)  # >1: every resumption of a conversation is a use
    expire_minutes: float = Field(30.0, ge=1.0, le=1200.0)
    new_session_minutes: float = Field(5.0, ge=0.1, le=60.0)

    @model_validator(mode="after")
    def _windows(self) -> TokenSettings:
        if self.new_session_minutes > self.expire_minutes:
            raise ValueError("tokens.new_session_minutes cannot be longer than tokens.expire_minutes")
        return self


class RateSettings(_Section):
    burst: int = Field(10, ge=1, le=1000)
    per_hour: float = Field(60.0, gt=0.0, le=36000.0)


class KeyServiceSettings(_Section):
    EXAMPLE: ClassVar[str] = "config/tokens.toml"

    service: ServiceSettings = ServiceSettings()
    tokens: TokenSettings = TokenSettings()
    rate_limit: RateSettings = RateSettings()
    log: LogSettings = LogSettings()
    source: str = Field("built-in defaults", exclude=True)
