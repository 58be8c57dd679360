"""The household's key service (`pivoice token-service`) as a subprocess for tests and bench/: TLS with a
throwaway CA, the stand-in's REST side as its Gemini API, its own devices file."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import trustme
from harness import ROOT, TEST_KEY, Daemon, daemon_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KeyService:
    """`start()` runs it; `add(name)` adds a device (as `add-device` does) and returns its secret."""

    def __init__(self, tmp_path: Path, standin, home: Path, extra: str = ""):
        self.dir = tmp_path / "keyservice"
        self.dir.mkdir()
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = self.dir / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert.cert_chain_pems[0].write_to_path(str(self.dir / "cert.pem"))
        cert.private_key_pem.write_to_path(str(self.dir / "key.pem"))
        self.port = free_port()
        self.config = self.dir / "tokens.toml"
        self.config.write_text(f"""
[service]
listen = "127.0.0.1"
port = {self.port}
tls_cert_file = "{self.dir / 'cert.pem'}"
tls_key_file = "{self.dir / 'key.pem'}"
devices_file = "{self.dir / 'devices'}"
base_url = "{standin.rest_url}"
{extra}
""")
        # The stand-in's CA for its REST side, the key in the environment (as in a foreground run).
        self.env = {**daemon_env(home, TEST_KEY), "SSL_CERT_FILE": str(standin.ca_file)}
        self.tmp = tmp_path
        self.proc: Daemon | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/token"

    def add(self, name: str) -> str:
        out = subprocess.run([sys.executable, "-m", "pivoice", "token-service", "add-device", name,
                              "--config", str(self.config)], env=self.env, cwd=ROOT, capture_output=True,
                             text=True, timeout=60, check=True).stdout
        return next(line.strip() for line in out.splitlines() if line.startswith("    "))

    def start(self) -> KeyService:
        self.proc = Daemon(["token-service", "--config", str(self.config)], self.env, self.tmp)
        self.proc.wait_for("key service ready on", timeout=30)
        return self

    def request(self, secret: str) -> tuple[int, dict, dict]:
        """One POST /token: (status, JSON body, headers)."""
        req = urllib.request.Request(self.url, data=b"{}", method="POST",
                                     headers={"Authorization": f"Bearer {secret}"})
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=15) as r:
                return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}"), {k.lower(): v for k, v in e.headers.items()}

    def stop(self) -> None:
        if self.proc is not None and self.proc.proc.poll() is None:
            self.proc.stop()
