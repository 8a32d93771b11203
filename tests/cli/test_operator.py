"""Operator mistakes at the command line: bad database URLs, a folder without a database, a lost
or wrong secret key, terminal control characters in titles. Real processes; each mistake exits 2
with one `error:` line and writes nothing."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet

from skypost import Skypost
from skypost.config import load_settings
from skypost.crypto import SecretKeyError
from tests.conftest import PG_ADMIN_URL, TEST_KEY
from tests.support.pds import free_port

SKYPOST = [sys.executable, "-m", "skypost.cli"]
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment (PYTHONPATH included: the child runs this tree), no SKYPOST_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(extra)
    return env


def run(env, *args, cwd, stdin=None):
    return subprocess.run(SKYPOST + list(args), env=env, cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=60)


def assert_refused(result, *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_bad_database_urls_are_one_line_and_exit_2(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "a-directory").mkdir()
    (work / "not-sqlite.db").write_text("this is not a database\n")
    before = listing(work)
    cases = [
        ("mysql://user:hunter2@db.example/skypost", "unsupported database URL"),
        ("skypost.db", "unsupported database URL"),
        (f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/skypost", "cannot connect to PostgreSQL"),
        ("sqlite:///a-directory", "a-directory"),
        ("sqlite:///not-sqlite.db", "not a database"),
    ]
    for url, needle in cases:
        for command in (["init"], ["status"], ["submit", "--id", "1", "--title", "t", "--url", "https://e.com"],
                        ["worker", "--burst"], ["account", "list"]):
            line = assert_refused(run(base_env(), "--database-url", url, *command, cwd=work), needle)
            assert "hunter2" not in line  # a password in the URL is never printed
        assert listing(work) == before, url  # no database, no key file, nothing


def test_commands_other_than_init_need_a_database(tmp_path):
    """`status` in the wrong folder used to create skypost.db and skypost.key there."""
    env = base_env(SKYPOST_SECRET_KEY=TEST_KEY)
    commands = [["status"], ["status", "1"], ["log"], ["pause"], ["resume"], ["retry", "1"],
                ["worker", "--burst"], ["account", "list"], ["account", "remove", "a.test"],
                ["submit", "--id", "1", "--title", "t", "--url", "https://e.com"],
                ["token", "list"], ["hook", "list"], ["feed", "list"]]
    for command in commands:
        line = assert_refused(run(env, *command, cwd=tmp_path))
        assert line == f"error: no database at {tmp_path / 'skypost.db'}; run skypost init", line
        assert listing(tmp_path) == []
    added = run(base_env(), "account", "add", "a.test", "--password-stdin", cwd=tmp_path, stdin="pw\n")
    assert_refused(added, "no database at")
    assert listing(tmp_path) == []
    # the same on an empty PostgreSQL database: no tables are made
    name = f"skypost_t_empty_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        assert_refused(run(env, "--database-url", url, "status", cwd=tmp_path), "run skypost init")
        with psycopg.connect(url) as conn:
            tables = conn.execute("SELECT count(*) FROM information_schema.tables "
                                  "WHERE table_schema = 'public'").fetchone()
        assert tables == (0,)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    # init makes it; then the others work
    assert run(env, "init", cwd=tmp_path).returncode == 0
    assert run(env, "status", cwd=tmp_path).returncode == 0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_and_its_wal_files_are_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        assert run(base_env(), "init", cwd=tmp_path).returncode == 0
        db = tmp_path / "skypost.db"
        assert mode(db) == 0o600 and mode(tmp_path / "skypost.key") == 0o600
        # the Python API creates its database the same way; -wal and -shm exist while it is open
        with Skypost.from_url(f"sqlite:///{tmp_path}/py.db",
                              settings=load_settings(env={}, secret_key=TEST_KEY)) as app:
            app.submit({"id": "1", "title": "t", "url": "https://e.com/1"})
            files = [tmp_path / name for name in ("py.db", "py.db-wal", "py.db-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        with sqlite3.connect(db) as conn:  # what sqlite makes beside ours follows the file's mode
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE t (x)")
            assert mode(tmp_path / "skypost.db-wal") == 0o600
    finally:
        os.umask(old)


def test_a_lost_or_wrong_key_is_refused_and_never_replaced(tmp_path):
    env = base_env(SKYPOST_ALLOW_PRIVATE_URLS="0")
    assert run(env, "init", cwd=tmp_path).returncode == 0
    key_file = tmp_path / "skypost.key"
    settings = load_settings(env={}, database_url=f"sqlite:///{tmp_path}/skypost.db")
    with Skypost(settings, auto_init=False) as app:  # an account secret, encrypted with the key
        app.add_account("alice.example.com", "app-pass-word", service="https://pds.invalid", verify=False)
    assert run(env, "submit", "--id", "1", "--title", "Waiting", "--url", "https://e.com/1",
               cwd=tmp_path).returncode == 0
    original = key_file.read_bytes()

    key_file.unlink()
    for command in (["worker", "--burst"], ["account", "list"], ["init"]):
        assert_refused(run(env, *command, cwd=tmp_path), "skypost.key")
        assert not key_file.exists()  # never a new key over old secrets
    status = run(env, "status", "1", "--json", cwd=tmp_path)  # still visible
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "pending"

    key_file.write_bytes(Fernet.generate_key())
    wrong = key_file.read_bytes()
    for command in (["worker", "--burst"], ["account", "update", "alice.example.com", "--manual"]):
        assert_refused(run(env, *command, cwd=tmp_path), "skypost.key", "not the key of this database")
    added = run(env, "account", "add", "bob.example.com", "--password-stdin", "--service",
                "https://pds.invalid", cwd=tmp_path, stdin="pw\n")
    assert_refused(added, "skypost.key")
    assert_refused(run(env, "init", cwd=tmp_path), "not the key of this database")
    assert key_file.read_bytes() == wrong
    other = Fernet.generate_key().decode()
    assert_refused(run({**env, "SKYPOST_SECRET_KEY": other}, "worker", "--burst", cwd=tmp_path),
                   "SKYPOST_SECRET_KEY")

    key_file.write_bytes(original)
    listed = run(env, "account", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0
    assert [a["handle"] for a in json.loads(listed.stdout)] == ["alice.example.com"]  # bob never written
    status = json.loads(run(env, "status", "1", "--json", cwd=tmp_path).stdout)
    assert status["status"] == "pending" and status["deliveries"][0]["attempts"] == 0


def test_a_database_from_before_the_key_check_is_checked_against_its_secrets(sqlite_url):
    settings = load_settings(env={}, database_url=sqlite_url, secret_key=TEST_KEY)
    with Skypost(settings) as app:
        app.add_account("alice.example.com", "pw", service="https://pds.invalid", verify=False)
        with app.db.transaction() as conn:
            conn.execute("DELETE FROM settings WHERE key = 'secret_key_check'")
    with Skypost(settings.replace(secret_key=Fernet.generate_key().decode())) as app:
        with pytest.raises(SecretKeyError, match="not the key of this database"):
            app.cipher()
    with Skypost(settings) as app:
        assert app.cipher().decrypt(app.cipher().encrypt("x")) == "x"


def test_human_output_has_no_terminal_control_characters(tmp_path):
    env = base_env(SKYPOST_SECRET_KEY=TEST_KEY)
    assert run(env, "init", cwd=tmp_path).returncode == 0
    title = "Evil \x1b]0;owned\x07 title\x1b[2J\x9b31m\rback\nnext\ttab"
    submitted = run(env, "submit", "--id", "1", "--title", title, "--url", "https://e.com/1",
                    cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    outputs = [submitted.stdout]
    for command in (["status"], ["status", "1"], ["log"], ["retry", "1"]):
        result = run(env, *command, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr)
        outputs.append(result.stdout + result.stderr)
    unknown = run(env, "status", "\x1b[31mnope\x07", cwd=tmp_path)
    assert_refused(unknown)
    outputs.append(unknown.stderr)
    for text in outputs:
        assert not CONTROLS.search(text), repr(text)
    overview = run(env, "status", cwd=tmp_path).stdout
    assert "Evil ]0;owned title[2J31m back next tab" in overview  # one line per post
    as_json = json.loads(run(env, "status", "--json", cwd=tmp_path).stdout)
    assert as_json["posts"][0]["title"] == title  # --json keeps the data exactly


def test_a_broken_lazy_import_is_a_bug_not_an_unknown_command(tmp_path):
    code = ("import sys; sys.modules['skypost.web.commands'] = None\n"
            "from skypost.cli import main\nmain(['serve', '--help'])")
    result = subprocess.run([sys.executable, "-c", code], env=base_env(), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "No such command" not in result.stderr
    assert "ImportError" in result.stderr or "ModuleNotFoundError" in result.stderr
