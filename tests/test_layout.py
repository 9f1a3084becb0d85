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
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for top in FOLDERS:
        shutil.copytree(REPO / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
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
