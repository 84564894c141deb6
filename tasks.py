#!/usr/bin/env python3
"""Project tasks with nothing but Python 3.11+: each installs what it needs into .venv.

python3 tasks.py demo     # the whole flow on embedded Redis and the simulator
python3 tasks.py test     # the test suite (unit, integration on a real Redis, end to end)
python3 tasks.py lint     # ruff and mypy
python3 tasks.py run      # the daemon, configured by EXECUTOR_* variables
python3 tasks.py bench    # benchmarks into docs/benchmarks.md (--quick, --only, --daemon-env)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("EXECUTOR_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def ensure_venv(extras: str) -> None:
    """Create .venv and install the package with ``extras``; skip when up to date."""
    if sys.version_info < (3, 11):  # noqa: UP036 - tasks.py may be started by an older python3
        sys.exit(f"executor needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except Exception as exc:  # any failure: explain and stop
            shutil.rmtree(VENV, ignore_errors=True)
            sys.exit(
                f"cannot create a virtual environment ({exc}); on Debian/Ubuntu: "
                "apt-get install python3-venv"
            )
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"installing executor[{extras}] into {VENV}", flush=True)
    target = f".[{extras}]" if extras else "."
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-e", target], cwd=ROOT, check=True)
    stamp.write_text(digest)


# Programs the deployment tests run, and the Debian package that has each.
SYSTEM_TOOLS = {"promtool": "prometheus", "docker-compose": "docker-compose"}


def ensure_tools() -> None:
    """Install missing system tools with apt when we may (root on Debian/Ubuntu);
    otherwise say what is missing: the tests that need them say so too."""
    missing = sorted({pkg for tool, pkg in SYSTEM_TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    can_apt = shutil.which("apt-get") is not None and hasattr(os, "geteuid") and os.geteuid() == 0
    if not can_apt:
        print(f"note: install {' '.join(missing)} (apt-get install {' '.join(missing)}) "
              "for the deployment tests", flush=True)  # fmt: skip
        return
    print(f"installing {' '.join(missing)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_SUSPEND": "1"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    subprocess.run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL, env=env, check=False)
    subprocess.run(install, stdout=subprocess.DEVNULL, env=env, check=True)


def run(*args: str) -> int:
    return subprocess.call([str(BIN / args[0]), *args[1:]], cwd=ROOT)


def demo(argv: list[str]) -> int:
    ensure_venv("embedded")
    return run("executor", "demo", *argv)


def test(argv: list[str]) -> int:
    ensure_venv("test,embedded")
    ensure_tools()
    return run("pytest", *argv)


def lint(_argv: list[str]) -> int:
    ensure_venv("test,embedded")
    return (
        run("ruff", "check", "executor", "tests", "bench", "tasks.py")
        or run("ruff", "format", "--check", "executor", "tests", "bench", "tasks.py")
        or run("mypy")
    )


def daemon(argv: list[str]) -> int:
    ensure_venv("")
    return run("executor", "run", *argv)


def bench(argv: list[str]) -> int:
    ensure_venv("bench,embedded")
    return run("python", "-m", "bench", *argv)


TASKS = {"demo": demo, "test": test, "lint": lint, "run": daemon, "bench": bench}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        print(__doc__)
        return 2
    return TASKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
