"""Config: YAML base, env overrides, unknown keys with their path, secrets masked, CLI exit codes."""

import pytest
from pydantic import ValidationError

from netobs.config import ConfigError, dump, load
from netobs_app.cli import main


def write(tmp_path, text):
    p = tmp_path / "netobs.yaml"
    p.write_text(text)
    return p


def test_defaults_without_file():
    s = load(None)
    assert s.transport.type == "inprocess"
    assert s.store.type == "chdb"


def test_yaml_and_env_override(tmp_path, monkeypatch):
    p = write(tmp_path, "store:\n  retention_days: 30\ntransport:\n  kafka:\n    topic: a\n")
    monkeypatch.setenv("NETOBS__TRANSPORT__KAFKA__TOPIC", "from-env")
    s = load(p)
    assert s.store.retention_days == 30
    assert s.transport.kafka.topic == "from-env"


def test_frozen(tmp_path):
    s = load(None)
    with pytest.raises(ValidationError):
        s.store.retention_days = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("store:\n  chdb:\n    pathh: /x\n", "unknown key 'store.chdb.pathh'"),
        ("transport:\n  type: carrier-pigeon\n", "'transport.type'"),
        ("store:\n  retention_days: many\n", "'store.retention_days'"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("store: [unclosed\n", "not valid YAML"),
    ],
)
def test_errors_name_the_key(tmp_path, text, expected):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load(p)
    assert expected in str(e.value)
    assert str(p) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load(tmp_path / "nope.yaml")


def test_secrets_masked_in_dump(tmp_path, monkeypatch):
    monkeypatch.setenv("NETOBS__STORE__CLICKHOUSE__PASSWORD", "hunter2")
    monkeypatch.setenv("NETOBS__TRANSPORT__KAFKA__SASL_PASSWORD", "s3cret")
    s = load(None)
    assert s.store.clickhouse.password.get_secret_value() == "hunter2"
    text = dump(s) + repr(s)
    assert "hunter2" not in text and "s3cret" not in text


@pytest.mark.parametrize(
    "text",
    ["store:\n  bogus: 1\n", "store:\n  retention_days: -3\n"],
)
def test_cli_check_exit_2_one_message(tmp_path, capsys, text):
    p = write(tmp_path, text)
    assert main(["config", "--check", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netobs: configuration error:") and "Traceback" not in err


def test_cli_check_missing_file(tmp_path, capsys):
    assert main(["config", "--check", str(tmp_path / "missing.yaml")]) == 2
    assert "no such configuration file" in capsys.readouterr().err


def test_cli_check_binary_file(tmp_path, capsys):
    """A capture given by mistake (found running `config --check` in the image): one line, exit 2."""
    p = tmp_path / "x.pcap"
    p.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    assert main(["config", "--check", str(p)]) == 2
    err = capsys.readouterr().err
    assert "not a text file" in err and "Traceback" not in err


def test_cli_check_ok_and_dump(tmp_path, capsys):
    p = write(tmp_path, "store:\n  retention_days: 7\n")
    assert main(["config", "--check", str(p)]) == 0
    assert main(["--config", str(p), "config", "--dump"]) == 0
    assert "retention_days: 7" in capsys.readouterr().out
