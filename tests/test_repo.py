"""The repository's promises: README commands, CI running the README's test command, shell hygiene."""

from __future__ import annotations

import shutil
import subprocess

from conftest import ROOT


def readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line.strip() for line in lines[:12] if line.startswith("    ")]


def test_readme_opens_with_the_two_commands():
    setup_run, tests = readme_commands()
    assert setup_run.startswith("bash scripts/setup.sh") and "pivoice run" in setup_run
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_shell_scripts_pass_shellcheck():
    assert shutil.which("shellcheck"), "shellcheck missing: bash scripts/setup.sh --dev installs it"
    scripts = [str(p) for p in (ROOT / "scripts").glob("*.sh")] + [str(ROOT / ".ci" / "run")]
    r = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
