import pytest

from skypost.config import ConfigError, load_settings


def test_defaults():
    s = load_settings(env={}, config_file=None)
    assert s.retry_delays == (60.0, 120.0, 300.0)
    assert s.circuit_threshold == 3 and s.circuit_cooldown == 900.0 and s.job_lease == 60.0
    assert s.database_url == "sqlite:///skypost.db" and s.allow_private_urls is False


def test_environment_wins_over_file(tmp_path):
    cfg = tmp_path / "skypost.toml"
    cfg.write_text('retry_delays = [5, 6, 7]\ncircuit_threshold = 4\njob_lease = 30\n')
    s = load_settings(env={"SKYPOST_RETRY_DELAYS": "1,1,1", "SKYPOST_CONFIG": str(cfg)})
    assert s.retry_delays == (1.0, 1.0, 1.0) and s.circuit_threshold == 4 and s.job_lease == 30.0


def test_bad_knob_is_named():
    with pytest.raises(ConfigError, match="circuit_threshold"):
        load_settings(env={"SKYPOST_CIRCUIT_THRESHOLD": "many"}, config_file=None)
    with pytest.raises(ConfigError, match="retry_delays"):
        load_settings(env={"SKYPOST_RETRY_DELAYS": "1,-1"}, config_file=None)


def test_key_file_next_to_sqlite_database(tmp_path):
    s = load_settings(env={"SKYPOST_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}, config_file=None)
    assert s.key_file() == tmp_path / "skypost.key"
