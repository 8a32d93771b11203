"""skypost's wheel in a Django site's environment.

The site already runs Django and libraries older than skypost's lock files (SQLAlchemy 2.0,
httpx 0.27, pydantic 2.7…): every dependency sits at the lower bound that pyproject.toml
declares. Installing the wheel must keep all of them, and skypost must then publish (CLI and
Django app) through the real PDS. Downloads come from PyPI into pip's own cache, so a rerun
installs from the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import TEST_KEY
from tests.contrib.sites import check_django_scenario, run_scenario

REPO = Path(__file__).resolve().parents[2]
# what the site runs besides skypost's own dependencies: its framework, and atproto's pydantic
# at the oldest version atproto accepts
HOST_PACKAGES = ["Django==4.2.30", "pydantic==2.7.4"]
# byte-compiling is most of an install's time, and nothing here needs it
PIP_INSTALL = ["-m", "pip", "install", "-q", "--no-compile"]


def lower_bounds(pyproject: Path) -> list[str]:
    """Each runtime dependency pinned to its declared lower bound."""
    pins = []
    for text in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        req = Requirement(text)
        lows = [spec.version for spec in req.specifier if spec.operator == ">="]
        assert len(lows) == 1, f"{text}: needs one tested lower bound (>=)"
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        pins.append(f"{req.name}{extras}=={lows[0]}")
    return pins


def test_every_dependency_is_a_range_up_to_the_next_major():
    for text in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        ops = sorted(spec.operator for spec in Requirement(text).specifier)
        assert ops == ["<", ">="], f"{text}: want >=tested,<next-major"


def _run(args: list[str], env: dict[str, str], *, timeout: float = 300, stdin: str | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, env=env, input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
    return done


def _installed(python: Path, env: dict[str, str]) -> dict[str, str]:
    """Name → version of every installed distribution (a wheel file's too, which freeze
    prints as `name @ file://…`)."""
    listed = _run([str(python), "-m", "pip", "list", "--format=json"], env).stdout
    return {canonicalize_name(d["name"]): d["version"] for d in json.loads(listed)}


def _clean_env() -> dict[str, str]:
    """The venv's own interpreter and packages only: no PYTHONPATH to the source tree."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith("SKYPOST_")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy, so the build leaves nothing in the checkout."""
    scratch = tmp_path_factory.mktemp("build")
    dist, env = scratch / "dist", _clean_env()
    source = scratch / "source"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(dist),
                  str(source)], env)
    # e.g. a license given as a TOML table: setuptools prints a deprecation banner
    assert "Deprecat" not in built.stdout + built.stderr
    (wheel,) = dist.glob("skypost-*.whl")
    return wheel


def _check_commands(python: Path, env: dict[str, str]) -> None:
    skypost = python.parent / "skypost"
    for command in ([str(skypost), "--help"], [str(python), "-m", "skypost", "--help"]):
        # run from the venv's bin: no source tree in the working directory either
        assert "Usage: skypost" in _run(command, env, cwd=python.parent).stdout
    typed = _run([str(python), "-c", "import importlib.resources as r;"
                  "print(r.files('skypost').joinpath('py.typed').is_file())"], env,
                 cwd=python.parent)
    assert typed.stdout.strip() == "True"


def test_wheel_installs_into_a_clean_venv_and_runs(wheel, tmp_path):
    env = _clean_env()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env)
    python = venv / "bin" / "python"
    _run([str(python), *PIP_INSTALL, str(wheel)], env)
    _check_commands(python, env)


def test_wheel_keeps_the_sites_packages_and_publishes(wheel, make_account, pds, proxy, tmp_path):
    env = _clean_env()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env)
    python, skypost = venv / "bin" / "python", venv / "bin" / "skypost"
    site = HOST_PACKAGES + lower_bounds(REPO / "pyproject.toml")
    _run([str(python), *PIP_INSTALL, *site], env)
    before = _installed(python, env)

    _run([str(python), *PIP_INSTALL, str(wheel)], env)
    after = _installed(python, env)
    changed = {name: (v, after.get(name)) for name, v in before.items() if after.get(name) != v}
    assert changed == {}, f"installing skypost replaced the site's packages: {changed}"
    assert set(after) - set(before) == {"skypost"}

    _check_commands(python, env)

    # the command line, at the lower bounds, end to end
    alice = make_account("wheel")
    cli_env = {**env, "SKYPOST_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
               "SKYPOST_SECRET_KEY": TEST_KEY, "SKYPOST_ALLOW_PRIVATE_URLS": "1"}
    _run([str(skypost), "init"], cli_env)
    _run([str(skypost), "account", "add", alice.handle, "--password-stdin", "--service", proxy.url],
         cli_env, stdin=alice.app_password + "\n")
    submitted = _run([str(skypost), "submit", "--id", "w1", "--title", "Installed from the wheel",
                      "--url", "https://blog.example.com/wheel", "--json"], cli_env)
    assert json.loads(submitted.stdout)["status"] == "pending"
    _run([str(skypost), "worker", "--burst"], cli_env)
    status = json.loads(_run([str(skypost), "status", "w1", "--json"], cli_env).stdout)
    assert status["status"] == "completed", status
    assert [r["uri"] for r in pds.list_posts(alice.did)] == [status["deliveries"][0]["uri"]]

    # the Django app from the wheel, in the site's Django 4.2
    bob = make_account("wheeldj")
    scratch = tmp_path / "site"
    scratch.mkdir()
    seen = run_scenario("djangoproject", scratch, handle=bob.handle, password=bob.app_password,
                        service=proxy.url, python=str(python), inherit_pythonpath=False, env=env)
    check_django_scenario(seen, pds.list_posts(bob.did))
