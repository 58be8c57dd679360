"""The repository's promises: README commands, CI running the README's test command, shell hygiene."""

from __future__ import annotations

import shutil
import subprocess
import sys

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


def _pivoice_imports() -> dict[str, set[str]]:
    """Each pivoice module -> the pivoice modules it imports (anywhere in it, functions included)."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in (ROOT / "pivoice").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, *(node.module or "").split(".")]).strip(".") if node.level else node.module
                if target and target.startswith("pivoice"):
                    deps.add(target)
                    deps.update(f"{target}.{a.name}" for a in node.names)  # `from . import logs`
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("pivoice"))
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_no_import_cycle_inside_pivoice():
    graph = _pivoice_imports()
    assert "pivoice.assistant" in graph["pivoice.daemon"]  # the graph is read right
    cycles, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(" -> ".join([*path[path.index(d):], d]))
            elif d not in state:
                visit(d, [*path, d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # A package importing its own submodules (pivoice.audio -> pivoice.audio.x) is how packages work.
    cycles = [c for c in cycles if not all(p.startswith(c.split(" -> ")[0] + ".") or p == c.split(" -> ")[0]
                                           for p in c.split(" -> "))]
    assert cycles == []


def test_no_module_over_400_lines_unless_it_says_why():
    """A module over ~400 lines is one cohesive algorithm, and its docstring says so."""
    import ast

    long = []
    for path in (ROOT / "pivoice").rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > 420 and "one cohesive algorithm" not in (ast.get_docstring(ast.parse(text)) or ""):
            long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert long == []


def test_no_backup_or_stray_file_in_git():
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True).stdout
    stray = [f for f in files.splitlines() if f.endswith((".orig", ".rej", ".bak", ".swp", "~"))]
    assert stray == []


def test_ruff_finds_nothing():
    """The rule set is in pyproject.toml ([tool.ruff]); a `# noqa` says why beside it."""
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "pivoice", "tests", "bench"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_finds_nothing():
    r = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
