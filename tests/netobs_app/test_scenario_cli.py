"""``netobs scenario evaluate DIR`` on a directory it generated before: the conventions DIR holds are
evaluated again, not every one generated beside them (an unasked 14-day sFlow capture filled a disk)."""

from __future__ import annotations

import json

from netobs_app import scenario
from netobs_app.cli import build_parser


def _run(tmp_path, monkeypatch, *extra: str) -> tuple[list[str], list[str]]:
    generated, evaluated = [], []
    monkeypatch.setattr(scenario, "generate", lambda spec, where: generated.append(where.name) or {})
    monkeypatch.setattr(
        scenario,
        "_evaluate_one",
        lambda convention, where, settings, args: evaluated.append(convention) or {"convention": convention},
    )
    args = build_parser().parse_args(["scenario", "evaluate", str(tmp_path), "--output", "json", *extra])
    assert scenario.cmd_evaluate(args, None) == 0  # type: ignore[arg-type]
    return generated, evaluated


def test_a_directory_evaluated_again_keeps_to_its_conventions(tmp_path, monkeypatch, capsys):
    for c in ("router_ingress", "biflow"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "labels.json").write_text("[]")
    generated, evaluated = _run(tmp_path, monkeypatch)
    assert generated == [] and sorted(evaluated) == ["biflow", "router_ingress"]
    assert "--conventions to generate others" in capsys.readouterr().err


def test_named_conventions_are_generated_beside_them(tmp_path, monkeypatch):
    (tmp_path / "biflow").mkdir()
    (tmp_path / "biflow" / "labels.json").write_text("[]")
    generated, evaluated = _run(tmp_path, monkeypatch, "--conventions", "biflow,late")
    assert generated == ["late"] and evaluated == ["biflow", "late"]


def test_an_empty_directory_gets_every_convention(tmp_path, monkeypatch, capsys):
    generated, evaluated = _run(tmp_path, monkeypatch)
    assert generated == evaluated == list(scenario.TRAFFIC_CONVENTIONS)
    assert json.loads(capsys.readouterr().out)["seed"] is not None
