"""Settings loading: defaults <- YAML <- --set, with errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pipeline.toolkit.config import load_config, parse_override, to_dict


@dataclass
class Loss:
    """Loss weights."""

    lambda_lg: float = 0.5
    norm: str = "hybrid"


@dataclass
class Settings:
    steps: int = 10
    lr: float = 5e-5
    teachers: list[str] = field(default_factory=list)
    loss: Loss = field(default_factory=Loss)
    resume: str | None = None

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be >= 1 (--set steps=N)")


def test_defaults_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\nloss:\n  norm: global\n")
    cfg = load_config(Settings, path, ["loss.lambda_lg=2", "teachers=[a, b]", "resume=x"])
    assert cfg.steps == 20 and cfg.loss.norm == "global"
    assert cfg.loss.lambda_lg == 2.0 and isinstance(cfg.loss.lambda_lg, float)
    assert cfg.teachers == ["a", "b"] and cfg.resume == "x" and cfg.lr == 5e-5
    assert to_dict(cfg)["loss"] == {"lambda_lg": 2.0, "norm": "global"}


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ValueError, match=r"loss\.lamda_lg.*valid: loss\.lambda_lg"):
        load_config(Settings, None, ["loss.lamda_lg=1"])


def test_type_errors_and_validation_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="steps: expected int"):
        load_config(Settings, None, ["steps=abc"])
    with pytest.raises(ValueError, match="steps must be >= 1"):
        load_config(Settings, None, ["steps=0"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="bad.yaml: expected a mapping"):
        load_config(Settings, bad)


def test_an_override_is_key_equals_yaml_value():
    assert parse_override("a.b=1e-4") == ("a.b", 1e-4)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_override("nothing")


def test_flag_values_win_over_the_file_and_set_and_are_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\nlr: 1.0e-3\n")
    cfg = load_config(Settings, path, ["steps=30", "loss.norm=local"], values={"steps": 40})
    assert cfg.steps == 40 and cfg.lr == 1e-3 and cfg.loss.norm == "local"
    assert load_config(Settings, path, values={}).steps == 20
    nested = load_config(Settings, None, ["loss.lambda_lg=2"], values={"loss.norm": "none"})
    assert nested.loss == Loss(lambda_lg=2.0, norm="none")
    with pytest.raises(ValueError, match="steps: expected int"):
        load_config(Settings, None, values={"steps": "many"})
    with pytest.raises(ValueError, match="steps must be >= 1"):
        load_config(Settings, path, ["steps=5"], values={"steps": 0})
    assert load_config(Settings, None, ["steps=0"], values={"steps": 3}).steps == 3
