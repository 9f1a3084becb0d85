"""Resolve the Apache Kafka broker jars from Maven Central and cache them.

privmon runs a real Kafka broker without Docker: Maven resolves
``org.apache.kafka:kafka_2.13`` (pinned in ``pom.xml`` beside this file) and
copies the jars into a cache directory that later starts reuse.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

POM_PATH = Path(__file__).with_name("pom.xml")
LOG_CONFIG_PATH = Path(__file__).with_name("log4j2.yaml")


class PrerequisiteMissing(RuntimeError):
    """A program the local broker needs (java, mvn) is not installed."""


def kafka_version() -> str:
    """The Kafka version pinned in pom.xml."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM_PATH.read_text())
    if match is None:
        raise RuntimeError(f"{POM_PATH}: expected a <kafka.version> property, found none")
    return match.group(1)


def cache_root() -> Path:
    """Where jars are cached: $PRIVMON_CACHE, else ~/.cache/privmon."""
    env = os.environ.get("PRIVMON_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "privmon"


def lib_dir() -> Path:
    return cache_root() / f"kafka-{kafka_version()}" / "lib"


def require_java() -> str:
    """Path of a java >= 17, or PrerequisiteMissing saying what to install."""
    java = shutil.which("java")
    if java is None:
        raise PrerequisiteMissing(
            "java not found on PATH. The local Kafka broker needs a JDK 17 or newer: "
            "install it (Debian/Ubuntu: `apt-get install openjdk-17-jdk-headless`; "
            "macOS: `brew install openjdk@17`) and re-run."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if match is None or int(match.group(1)) < 17:
        raise PrerequisiteMissing(
            f"{java} reports {out.splitlines()[0] if out else 'no version'}; Kafka 4 "
            "needs Java 17 or newer. Install a JDK 17+ and put it first on PATH."
        )
    return java


def require_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise PrerequisiteMissing(
            "mvn not found on PATH. privmon resolves the Kafka broker jars from Maven "
            "Central with Maven: install it (Debian/Ubuntu: `apt-get install maven`; "
            "macOS: `brew install maven`) and re-run."
        )
    return mvn


def ensure_jars(*, quiet: bool = False) -> Path:
    """Return the directory holding the broker's jars, resolving them if needed.

    The directory is filled atomically (resolved into a temporary sibling, then
    renamed) so an interrupted download never leaves a half-filled cache.
    """
    target = lib_dir()
    if (target / f"kafka_2.13-{kafka_version()}.jar").exists():
        return target
    require_java()
    mvn = require_maven()
    staging = target.with_name("lib.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(
            f"privmon: resolving Apache Kafka {kafka_version()} jars with Maven into "
            f"{target} (first run only) ...",
            file=sys.stderr,
            flush=True,
        )
    cmd = [
        mvn, "-B", "-q", "-f", str(POM_PATH),
        "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(
            f"Maven could not resolve the Kafka jars (exit {proc.returncode}).\n"
            f"command: {' '.join(cmd)}\n{tail}\n"
            "Check that Maven Central is reachable (proxy settings in ~/.m2/settings.xml)."
        )
    staging.rename(target)
    return target
