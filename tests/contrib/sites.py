"""Run a test site's scenario (a Django or Wagtail project under tests/contrib/) in a child
process, and check what the Django site's scenario saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

HERE = Path(__file__).resolve().parent


def run_scenario(project: str, tmp_path: Path, *, handle: str, password: str, service: str,
                 python: str = sys.executable, inherit_pythonpath: bool = True,
                 env: Mapping[str, str] | None = None, timeout: float = 240) -> dict[str, Any]:
    """The scenario's observations. The child gets this environment (so PYTHONPATH reaches it)
    without SKYPOST_* variables: the site configures skypost through settings.SKYPOST."""
    project_dir = HERE / project
    child = {k: v for k, v in (os.environ if env is None else env).items()
             if not k.startswith("SKYPOST_")}
    paths = [str(project_dir)]
    if inherit_pythonpath and child.get("PYTHONPATH"):
        paths.append(child["PYTHONPATH"])
    child.update(PYTHONPATH=os.pathsep.join(paths), SITE_DB=str(tmp_path / "site.db"),
                 SITE_SKYPOST_URL=f"sqlite:///{tmp_path}/skypost.db", PDS_HANDLE=handle,
                 PDS_PASSWORD=password, PDS_SERVICE=service)
    done = subprocess.run([python, str(project_dir / "scenario.py")], env=child, cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def check_django_scenario(seen: Mapping[str, Any], records: list[dict[str, Any]]) -> None:
    """What djangoproject/scenario.py must have seen, and the account's records on the PDS."""
    assert seen["draft"] is None  # a draft is not a post
    assert seen["inside_transaction"] is None  # nothing before the commit
    assert seen["after_commit"]["status"] == "pending"  # submitted at the commit, no network yet
    assert seen["rolled_back_known"] == []  # a rolled-back save never reaches skypost
    assert seen["worker"].endswith("after 2 job(s)")
    assert seen["article"]["status"] == "completed", seen["article"]
    assert seen["note"]["status"] == "completed", seen["note"]
    # the edits added nothing
    assert seen["submitted"] == sorted([seen["article"]["id"], seen["note"]["id"]])

    texts = sorted(r["value"]["text"] for r in records)
    assert len(records) == 2, texts  # exactly once each
    assert texts[0].startswith("A short note from a Django mixin model")
    assert texts[1].startswith("Hello from Django\n")  # as saved when published, not the edit
    article_url = seen["article"]["deliveries"][0]["url"]
    assert seen["article"]["deliveries"][0]["uri"] in {r["uri"] for r in records}

    assert "completed" in seen["admin_list"] and article_url in seen["admin_list"]
    assert "changed by update()" in seen["admin_completed"]  # the status filter keeps it
    assert "changed by update()" not in seen["admin_failed"]
    assert "Retry requested for 1 post(s)" in seen["admin_retry"]
