"""`pivoice token-service`: the household's key service, so that speakers hold no Gemini API key.

It holds the API key (the systemd credential `gemini-api-key`, as a speaker would) and gives each speaker
that presents a known device secret an ephemeral Live API token: short-lived, limited-use, locked to the
model (and system instruction) the owner chose. A stolen speaker, or its SD card, then yields only a
device secret that the owner revokes by deleting one line, and tokens that expire within minutes.

    settings.py   the config file (/etc/pivoice/tokens.toml), validated
    devices.py    the device secrets (stored hashed, one line per device) and the rate limit per device
    service.py    the HTTPS endpoint (uvicorn), minting with google-genai, reload, sd_notify

Only a machine that runs it installs the `tokens` extra (uvicorn); speakers never import this package.
"""
