"""Teacher spec strings, YAML lists, option validation and loading errors (no model runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelgen.teachers import (
    TEACHERS,
    TeacherSpec,
    load_teacher,
    load_teacher_specs_yaml,
    parse_teacher_spec,
)


def test_a_spec_is_name_adapter_and_source():
    spec = parse_teacher_spec("dav2-l=depth-anything-v2:depth-anything/Depth-Anything-V2-Large-hf")
    assert spec == TeacherSpec(
        "dav2-l", "depth-anything-v2", "depth-anything/Depth-Anything-V2-Large-hf", {}
    )


def test_parse_options_and_round_trip():
    spec = parse_teacher_spec("mg_1=marigold:/ckpt/marigold,steps=4,seed=7,ensemble=3")
    assert spec.source == "/ckpt/marigold"
    assert spec.options == {"steps": "4", "seed": "7", "ensemble": "3"}
    assert parse_teacher_spec(str(spec)) == spec


def test_the_seven_teacher_adapters_are_registered():
    assert TEACHERS.names() == [
        "depth-anything-v2",
        "depth-pro",
        "dpt",
        "genpercept",
        "hf",
        "marigold",
        "zoedepth",
    ]


@pytest.mark.parametrize("name", ["Dav2", "da.v2", "-x", "a b", "dä"])
def test_invalid_names_show_a_valid_example(name):
    with pytest.raises(ValueError, match=r"e\.g\. dav2-large"):
        parse_teacher_spec(f"{name}=dpt:Intel/dpt-large")


@pytest.mark.parametrize("text", ["dpt:Intel/dpt-large", "x=Intel/dpt-large", "=dpt"])
def test_malformed_spec_shows_format(text):
    with pytest.raises(ValueError, match="NAME=ADAPTER:SOURCE"):
        parse_teacher_spec(text)


def test_unknown_adapter_lists_valid_ones():
    valid = "depth-anything-v2, depth-pro, dpt, genpercept, hf, marigold, zoedepth"
    with pytest.raises(ValueError, match=valid):
        parse_teacher_spec("x=midas-v9:/tmp/x")


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['stepz'\].*steps"):
        parse_teacher_spec("x=marigold:/tmp/x,stepz=4")


def test_option_without_value_and_repeated_option():
    with pytest.raises(ValueError, match="not key=value"):
        parse_teacher_spec("x=marigold:/tmp/x,steps")
    with pytest.raises(ValueError, match="twice"):
        parse_teacher_spec("x=marigold:/tmp/x,steps=1,steps=2")


def test_trust_remote_code_only_for_hf():
    spec = parse_teacher_spec("x=hf:org/model,kind=depth,trust_remote_code=true")
    assert spec.options["trust_remote_code"] == "true"
    with pytest.raises(ValueError, match="unknown option"):
        parse_teacher_spec("x=dpt:org/model,trust_remote_code=true")


def test_a_yaml_list_of_teachers_keeps_names_adapters_sources_and_options(tmp_path: Path):
    path = tmp_path / "teachers.yaml"
    path.write_text(
        "- {name: dav2, adapter: depth-anything-v2, source: /ckpt/dav2}\n"
        "- name: mg\n  adapter: marigold\n  source: prs-eth/marigold-depth-v1-1\n"
        "  options: {steps: 4, seed: 0}\n"
        "- {name: zoe, adapter: hf, source: Intel/zoedepth-nyu, "
        "options: {kind: metric_depth, trust_remote_code: true}}\n"
    )
    specs = load_teacher_specs_yaml(path)
    assert [s.name for s in specs] == ["dav2", "mg", "zoe"]
    assert specs[1].options == {"steps": "4", "seed": "0"}
    assert specs[2].options["trust_remote_code"] == "true"


def test_a_yaml_teachers_key_holds_the_list_too(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text("teachers:\n  - {name: a, adapter: dpt, source: Intel/dpt-large}\n")
    assert load_teacher_specs_yaml(path)[0].adapter == "dpt"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("- {name: a, adapter: dpt}\n", r"teacher #1: .*missing keys \['source'\]"),
        ("- {name: A.b, adapter: dpt, source: x/y}\n", "teacher #1: teacher name"),
        ("- {name: a, adapter: dpt, source: x/y, options: {full_sz: 3}}\n", "unknown option"),
        ("- {name: a, adapter: nope, source: x/y}\n", "valid: depth-anything-v2"),
        (
            "- {name: a, adapter: dpt, source: x/y}\n- {name: a, adapter: dpt, source: z/w}\n",
            "unique",
        ),
        ("name: a\n", "non-empty YAML list"),
        ("- [unclosed\n", "cannot read"),
    ],
)
def test_yaml_errors_name_the_file(tmp_path: Path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_teacher_specs_yaml(path)
    assert str(path) in str(info.value)


def test_missing_directory_names_it_and_suggests_tiny_checkpoint(tmp_path: Path):
    missing = tmp_path / "no-such-ckpt"
    with pytest.raises(FileNotFoundError) as info:
        load_teacher(f"x=depth-anything-v2:{missing}")
    message = str(info.value)
    assert str(missing) in message
    assert "labelgen tiny-checkpoint depth-anything-v2 DIR" in message


def test_unavailable_hub_id_is_file_not_found(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="no-such-org-4821/no-such-model"):
        load_teacher("x=dpt:no-such-org-4821/no-such-model")


def test_hf_requires_kind_before_loading(tmp_path: Path):
    with pytest.raises(ValueError, match="kind=disparity|depth|metric_depth"):
        load_teacher(f"x=hf:{tmp_path}")


def test_option_values_of_the_wrong_kind_are_refused_by_name():
    with pytest.raises(ValueError, match=r"steps='four' is not an integer"):
        load_teacher("x=marigold:/nonexistent/dir,steps=four")
    with pytest.raises(ValueError, match="kind='inverse'"):
        load_teacher("x=hf:/nonexistent/dir,kind=inverse")


def test_an_unknown_precision_is_refused_by_name():
    with pytest.raises(ValueError, match="--precision must be one of .*'fp8'"):
        load_teacher("x=dpt:/nonexistent", precision="fp8")


def test_a_missing_local_directory_is_named_before_any_hub_lookup(tmp_path):
    from labelgen.teachers import parse_teacher_spec, resolve_teacher

    spec = parse_teacher_spec(f"x=depth-anything-v2:{tmp_path / 'nowhere'}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_teacher(spec)


def test_spec_syntax_is_read_without_the_registry():
    from labelgen.teachers.spec import parse_spec_text, spec_adapter

    # an unknown adapter is the factory's to refuse, not the syntax's
    assert parse_spec_text("x=midas-v9:/a,k=v") == TeacherSpec("x", "midas-v9", "/a", {"k": "v"})
    assert spec_adapter("dpt:Intel/dpt-large,full_size=384") == "dpt"
    assert spec_adapter("x=dpt:Intel/dpt-large") == "dpt"
    assert spec_adapter("Intel/dpt-large") is None
    assert spec_adapter("/ckpt/dpt,x=dpt:y") is None  # no ':' before the first comma


def test_name_may_be_left_out_when_a_default_name_is_given():
    spec = parse_teacher_spec("dpt:/ckpt/mine,full_size=384", default_name=lambda s: "from-source")
    assert spec == TeacherSpec("from-source", "dpt", "/ckpt/mine", {"full_size": "384"})
    named = parse_teacher_spec("a=dpt:/ckpt/mine", default_name=lambda s: "unused")
    assert named.name == "a"
    with pytest.raises(ValueError, match="unknown option"):
        parse_teacher_spec("dpt:/ckpt/mine,stepz=1", default_name=lambda s: "x")
