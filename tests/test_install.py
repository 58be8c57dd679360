"""scripts/install.sh's choice of sound card for a new config, from the card lists of a Raspberry Pi
(recorded /proc/asound/cards and /proc/asound/pcm), through its --dry-run. (The install itself, under a
real systemd: tests/test_systemd.py.)"""

from __future__ import annotations

import os
import subprocess

import pytest
from harness import ROOT, TEST_KEY

INSTALL = ROOT / "scripts" / "install.sh"

# A Pi 4 with a ReSpeaker 2-Mic HAT and a USB microphone (Raspberry Pi OS Bookworm).
PI_HAT_USB_CARDS = """\
 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones
                      bcm2835 Headphones
 1 [vc4hdmi0       ]: vc4-hdmi - vc4-hdmi-0
                      vc4-hdmi-0
 2 [vc4hdmi1       ]: vc4-hdmi - vc4-hdmi-1
                      vc4-hdmi-1
 3 [seeed2micvoicec]: seeed-2mic-voic - seeed-2mic-voicecard
                      seeed-2mic-voicecard
 4 [Device         ]: USB-Audio - USB PnP Sound Device
                      C-Media Electronics Inc. USB PnP Sound Device at usb-0000:01:00.0-1.2, full speed
"""
PI_HAT_USB_PCM = """\
00-00: bcm2835 Headphones : bcm2835 Headphones : playback 8
01-00: MAI PCM i2s-hifi-0 : MAI PCM i2s-hifi-0 : playback 1
02-00: MAI PCM i2s-hifi-0 : MAI PCM i2s-hifi-0 : playback 1
03-00: bcm2835-i2s-wm8960-hifi wm8960-hifi-0 : bcm2835-i2s-wm8960-hifi wm8960-hifi-0 : playback 1 : capture 1
04-00: USB Audio : USB Audio : capture 1
"""
# The same Pi with only the USB microphone: the speaker is the headphone jack or HDMI.
PI_USB_CARDS = "\n".join(PI_HAT_USB_CARDS.splitlines()[:6] + PI_HAT_USB_CARDS.splitlines()[8:]) + "\n"
PI_USB_PCM = "".join(line + "\n" for line in PI_HAT_USB_PCM.splitlines() if not line.startswith("03-"))

HAT = "plughw:CARD=seeed2micvoicec,DEV=0"
USB = "plughw:CARD=Device,DEV=0"
JACK = "plughw:CARD=Headphones,DEV=0"


def dry_run(tmp_path, cards: str | None, pcm: str | None, *args: str, stdin=subprocess.DEVNULL) -> str:
    if os.path.exists("/etc/pivoice/pivoice.toml"):
        pytest.fail("pivoice is installed on this machine: its config would be kept, so no card is chosen")
    d = tmp_path / "asound"
    d.mkdir(exist_ok=True)
    for name, text in (("cards", cards), ("pcm", pcm)):
        if text is not None:
            (d / name).write_text(text)
    key = tmp_path / "key"
    key.write_text(TEST_KEY)
    r = subprocess.run(["bash", str(INSTALL), "--dry-run", "--cards", str(d), "--api-key-file", str(key), *args],
                       stdin=stdin, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def config_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("would set audio.")]


def test_several_microphones_without_a_terminal_takes_the_first_and_says_so(tmp_path):
    out = dry_run(tmp_path, PI_HAT_USB_CARDS, PI_HAT_USB_PCM)
    assert config_lines(out) == [f'would set audio.input_device = "{HAT}" in /etc/pivoice/pivoice.toml',
                                 f'would set audio.output_device = "{HAT}" in /etc/pivoice/pivoice.toml']
    assert f"microphone: {HAT} (seeed-2mic-voicecard), one of 2 sound devices for capture" in out
    assert "--input-device" in out  # how to choose the other one
    # The speaker: the microphone's own card, which also plays (of 4 that can).
    assert f"speaker: {HAT} (seeed-2mic-voicecard), one of 4 sound devices for playback" in out


def test_the_only_microphone_is_taken_and_the_speaker_is_the_first_that_plays(tmp_path):
    out = dry_run(tmp_path, PI_USB_CARDS, PI_USB_PCM)
    assert f"microphone: {USB} (USB PnP Sound Device), the only sound card for capture" in out
    assert config_lines(out) == [f'would set audio.input_device = "{USB}" in /etc/pivoice/pivoice.toml',
                                 f'would set audio.output_device = "{JACK}" in /etc/pivoice/pivoice.toml']


def test_no_sound_card_keeps_default_and_warns(tmp_path):
    out = dry_run(tmp_path, None, None)
    assert config_lines(out) == ['would set audio.input_device = "default" in /etc/pivoice/pivoice.toml',
                                 'would set audio.output_device = "default" in /etc/pivoice/pivoice.toml']
    assert "microphone: no sound card for capture found" in out and "may reach nothing" in out


def test_the_device_options_are_used_as_given(tmp_path):
    out = dry_run(tmp_path, PI_HAT_USB_CARDS, PI_HAT_USB_PCM, "--input-device", USB, "--output-device", "pv_spk")
    assert config_lines(out) == [f'would set audio.input_device = "{USB}" in /etc/pivoice/pivoice.toml',
                                 'would set audio.output_device = "pv_spk" in /etc/pivoice/pivoice.toml']
    assert "microphone:" not in out and "speaker:" not in out


def test_on_a_terminal_it_asks(tmp_path):
    leader, follower = os.openpty()
    os.write(leader, b"2\n\n")  # the USB microphone; then the suggested speaker
    try:
        out = dry_run(tmp_path, PI_HAT_USB_CARDS, PI_HAT_USB_PCM, stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert f"  1) {HAT}  (seeed-2mic-voicecard)" in out and f"  2) {USB}  (USB PnP Sound Device)" in out
    assert config_lines(out) == [f'would set audio.input_device = "{USB}" in /etc/pivoice/pivoice.toml',
                                 f'would set audio.output_device = "{JACK}" in /etc/pivoice/pivoice.toml']


def test_a_bad_device_name_is_refused_in_one_line(tmp_path):
    r = subprocess.run(["bash", str(INSTALL), "--dry-run", "--input-device", 'x" injected = "y'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 64 and r.stderr.count("\n") == 1 and "not an ALSA device name" in r.stderr


def test_a_speaker_for_the_key_service_gets_its_secret_a_drop_in_and_the_url(tmp_path):
    secret = tmp_path / "kitchen.secret"
    secret.write_text("not-a-real-secret\n")
    d = tmp_path / "asound"
    d.mkdir()
    r = subprocess.run(["bash", str(INSTALL), "--dry-run", "--cards", str(d), "--token-url",
                        "https://keys.home.arpa:8443/token", "--device-secret-file", str(secret)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"would run: install -m 0600 -o root -g root {secret} /etc/pivoice/device-secret" in r.stdout
    assert "would write /etc/systemd/system/pivoice.service.d/tokens.conf" in r.stdout
    assert 'would set live.token_url = "https://keys.home.arpa:8443/token" in /etc/pivoice/pivoice.toml' in r.stdout
    assert "api-key" not in r.stdout.replace("/etc/pivoice/api-key;", "")
    bad = subprocess.run(["bash", str(INSTALL), "--dry-run", "--token-url", "http://keys.home.arpa/token",
                          "--device-secret-file", str(secret)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 64 and "must be https://" in bad.stderr
