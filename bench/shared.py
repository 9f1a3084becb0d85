"""What the live benchmarks share: the repository, the bench's keys, a process's peak RSS."""

from __future__ import annotations

import os
import subprocess
import sysconfig
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYS = "2026-01-01=" + "42" * 32
NOISE_KEYS = "2026-01-01=" + "43" * 32  # (a bench key: its releases are not for anyone)


def hwm_mib(pid: int) -> float:
    """Peak resident memory of a running process (VmHWM), MiB; NaN once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def worker_env(tree: Path | None = None) -> dict[str, str]:
    """The environment of a bench's `privmon worker`: the bench's keys, and privmon
    imported from ``tree`` (a directory holding ``privmon/``, as extract_revision
    makes), else from a PYTHONPATH given to the bench, else from this checkout."""
    path = [str(tree) if tree else None, os.environ.get("PYTHONPATH"), str(REPO)]
    return {**os.environ, "PRIVMON_PSEUDONYM_KEYS": KEYS, "PRIVMON_NOISE_KEYS": NOISE_KEYS,
            "PYTHONPATH": os.pathsep.join(filter(None, path))}


def extract_revision(rev: str, into: Path) -> Path:
    """The code of git revision ``rev`` as ``into/privmon`` (with PYTHONPATH=into it is
    imported instead of the installed tree); returns ``into``."""
    tree = into / "privmon"
    tree.mkdir(parents=True)
    archive = into / "tree.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), rev, "privacy",
                    "streams", "agents", "bench", "configs"], cwd=REPO, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    source = tree / "privacy" / "_rows.c"
    if source.exists():  # (the C part, from 50df5c6 on: built beside it, as setup.py does)
        cc = (sysconfig.get_config_var("CC") or "cc").split()
        subprocess.run([*cc, "-O2", "-shared", "-fPIC", "-I" + sysconfig.get_path("include"),
                        str(source), "-o",
                        str(source.with_name("_rows" + sysconfig.get_config_var("EXT_SUFFIX")))],
                       check=True)
    return into
