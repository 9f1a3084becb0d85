"""The house as the README draws it: agents/, streams/, privacy/ and configs/ at the top
of the checkout, installed as one namespace (privmon.agents, ...); a wheel that works
without the checkout."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"agents", "streams", "privacy", "configs"}


def _python_files() -> list[Path]:
    return [p for top in (*FOLDERS, "tests", "bench") for p in (REPO / top).rglob("*.py")]


def test_every_import_of_the_project_goes_through_the_privmon_namespace():
    """``import streams.x`` would work from a checkout and fail from the wheel (and load
    a second copy of the module beside ``privmon.streams.x``)."""
    bare = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom)
                     and node.level == 0 else [])
            bare += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                     if n.split(".")[0] in FOLDERS]
    assert bare == [], bare


def test_pyproject_names_every_package_of_the_tree():
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {f"privmon.{top}": top for top in FOLDERS}
    assert tool["package-dir"] == mapped
    found = {
        "privmon." + ".".join(init.parent.relative_to(REPO).parts)
        for top in FOLDERS for init in (REPO / top).rglob("__init__.py")
    }
    assert set(tool["packages"]) == found


def test_a_wheel_installed_without_the_checkout_runs(tmp_path):
    """Build the wheel, install it (no deps) into a fresh venv, and from outside the
    checkout run ``privmon --help``, load the shipped default config and import every
    module. Third-party packages come from this venv's site-packages via PYTHONPATH
    (which, unlike a site dir, runs no .pth: the editable install stays out)."""
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ there
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    for top in FOLDERS:  # (not the editable install's built C part: the wheel builds it)
        shutil.copytree(REPO / top, src / top,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(wheels), str(src)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("privmon-*.whl")
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    py = target / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path"
                              "('purelib'))"], check=True, capture_output=True,
                             text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", purelib, str(wheel)], check=True, cwd=tmp_path)
    env = {**os.environ, "PYTHONPATH": sysconfig.get_path("purelib")}
    env.pop("PRIVMON_CONFIG", None)

    def run(*args: str) -> str:
        out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    assert "privacy-preserving monitoring" in run(str(py), "-m", "privmon.agents.cli",
                                                  "--help")
    script = f"""
import importlib, pkgutil, privmon
from privmon.streams import config
from privmon.agents.releases import releases
assert config.CONFIG_DIR.is_relative_to({purelib!r}), config.CONFIG_DIR
cfg = config.load_config(config.DEFAULT_PATH)
names = [m.name for m in pkgutil.walk_packages(privmon.__path__, "privmon.")
         if not m.name.endswith(".__main__")]  # (that one runs the CLI)
for name in names:
    module = importlib.import_module(name)
    assert module.__file__.startswith({purelib!r}), module.__file__
print(len(names), sorted(p.name for p in cfg.policies))
"""
    out = run(str(py), "-c", script)
    count, streams = out.split(" ", 1)
    assert int(count) > 50 and "monitoring" in streams, out
    installed = {p.name for p in Path(purelib).iterdir()}
    assert "privmon" in installed and not installed & {"bench", "tests", *FOLDERS}, installed


def _module_imports() -> dict[str, set[str]]:
    """privmon module -> the privmon modules it imports when it is imported (module and
    class level; not inside functions, not under TYPE_CHECKING)."""
    mods = {}
    for top in FOLDERS:
        for path in (REPO / top).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            mods[".".join(["privmon", *(parts[:-1] if parts[-1] == "__init__" else parts)])] = path

    def visit(nodes: list, out: set[str]) -> None:
        for node in nodes:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("privmon."):
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            for field in ("body", "orelse", "handlers", "finalbody"):
                visit(getattr(node, field, []) or [], out)

    graph = {}
    for name, path in mods.items():
        found: set[str] = set()
        visit(ast.parse(path.read_text()).body, found)
        graph[name] = {m for m in found if m in mods and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def dfs(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                found.append([*stack[stack.index(v):], v])
            elif v not in state:
                dfs(v)
        stack.pop()
        state[u] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    return found


def test_no_import_circle():
    graph = _module_imports()
    assert len(graph) > 60 and sum(map(len, graph.values())) > 150  # it read the imports
    assert _cycles(graph) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]  # control
