"""Run a test site's scenario (a Django or Wagtail project under tests/contrib/) in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run_scenario(project: str, tmp_path: Path, *, handle: str, password: str, service: str,
                 python: str = sys.executable, pythonpath: str | None = None,
                 timeout: float = 240) -> dict[str, Any]:
    """The scenario's observations. The child gets this environment (so PYTHONPATH reaches it),
    without SKYPOST_* variables: the site configures skypost through settings.SKYPOST."""
    project_dir = HERE / project
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    paths = [str(project_dir)] + ([pythonpath] if pythonpath else [])
    if pythonpath is None and env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env.update(PYTHONPATH=os.pathsep.join(paths), SITE_DB=str(tmp_path / "site.db"),
               SITE_SKYPOST_URL=f"sqlite:///{tmp_path}/skypost.db", PDS_HANDLE=handle,
               PDS_PASSWORD=password, PDS_SERVICE=service)
    done = subprocess.run([python, str(project_dir / "scenario.py")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)
