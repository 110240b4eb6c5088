"""The references in docs/ are what the code gives: regenerate them with `make docs`."""

from __future__ import annotations

import pytest

from netobs_app import docs


@pytest.mark.parametrize("name", sorted(docs.REFERENCES))
def test_the_committed_reference_is_up_to_date(name):
    committed = (docs.DOCS / name).read_text()
    assert committed == docs.REFERENCES[name](), f"docs/{name} is out of date: run `make docs`"


def test_check_finds_a_stale_reference(tmp_path, capsys):
    assert docs.main(["--dir", str(tmp_path)]) == 0
    assert docs.main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "metrics.md").write_text("stale\n")
    assert docs.main(["--check", "--dir", str(tmp_path)]) == 1
    assert "metrics.md is out of date" in capsys.readouterr().err


def test_every_key_and_metric_is_listed():
    config, metrics = docs.config_reference(), docs.metrics_reference()
    for key in ("store.clickhouse.port", "alerts.sinks.<name>.url", "collector.listeners[].listen"):
        assert f"| `{key}` |" in config
    assert "`NETOBS__STORE__CLICKHOUSE__PASSWORD`" in config
    for name in ("netobs_pipeline_rows_inserted_total", "netobs_build_info", "netobs_alerts_sent_total"):
        assert f"| `{name}` |" in metrics


@pytest.mark.parametrize(
    ("annotation", "text"),
    [
        (int, "int"),
        (str | None, "str \\| null"),
        (tuple[str, ...], "list of str"),
        (dict[str, int], "map of str to int"),
    ],
)
def test_type_names(annotation, text):
    assert docs.type_name(annotation) == text
