"""Python and pytest in a child process, as a user runs them, for the project's own tests.

The child sees ``path`` (folders), then the repository root (so that
``--impl tests.adapters:<Name>`` loads), then the caller's PYTHONPATH; not the variables
pytest-xdist sets in a worker (a child pytest run by a test in worker gw0 is not gw0).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(*args, cwd=ROOT, path=(), timeout: float = 600) -> subprocess.CompletedProcess:
    """``python *args`` in ``cwd`` with ``path`` and the repository root importable; text
    output captured; killed after ``timeout`` seconds (subprocess.TimeoutExpired)."""
    pythonpath = os.pathsep.join(filter(None, [*map(str, path), str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env={**env, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_pytest(*args, **kwargs) -> tuple[int, str]:
    """``python -m pytest -p no:cacheprovider *args`` (keywords as run_python's): (exit
    code, stdout + stderr)."""
    done = run_python("-m", "pytest", "-p", "no:cacheprovider", *args, **kwargs)
    return done.returncode, done.stdout + done.stderr
