"""Every config file in configs/ loads and validates as `student train` settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.toolkit.config import load_config
from student.config import TrainSettings

ROOT = Path(__file__).parents[2] / "configs"
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml") if "teachers" not in p.relative_to(ROOT).parts)


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"paper.yaml", "baseline.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path):
    settings = load_config(TrainSettings, path)
    assert settings.steps >= 1
    if path.name == "baseline.yaml":
        assert settings.data.mode == "baseline" and settings.loss.norm_sc == "global"
        assert not settings.loss.local_global


def test_ablation_configs_cover_tables_1_and_2():
    ablations = {p.stem: load_config(TrainSettings, p) for p in CONFIGS if "ablations" in p.parts}
    for norm in ("global", "hybrid", "local", "none"):
        shared = ablations[f"table1-shared-{norm}"].loss
        lg = ablations[f"table1-local-global-{norm}"].loss
        assert (shared.shared_context, shared.local_global, shared.norm_sc) == (True, False, norm)
        assert (lg.shared_context, lg.local_global, lg.norm_lg) == (False, True, norm)
    table2 = {
        k: (v.loss.shared_context, v.loss.local_global, v.data.mode)
        for k, v in ablations.items()
        if k.startswith("table2")
    }
    assert table2 == {
        "table2-base": (True, False, "baseline"),
        "table2-shared-only": (True, False, "cross_context"),
        "table2-local-global-only": (False, True, "cross_context"),
        "table2-both": (True, True, "cross_context"),
    }


TABLE3 = {  # pair -> (published DIODE / ETH3D AbsRel of base, of ours; the student's init)
    "dal-das": (("0.290", "0.110"), ("0.262", "0.098"), "Depth-Anything-V2-Small-hf"),
    "dal-midasl": (("0.313", "0.147"), ("0.295", "0.126"), "Intel/dpt-beit-large-512"),
    "midasl-midass": (("0.303", "0.150"), ("0.272", "0.120"), "Intel/dpt-swinv2-tiny-256"),
}


def test_table3_configs_are_the_table2_base_and_both_rows_of_each_pair():
    """Paper Table 3: per teacher/student pair, Base is the previous method and Ours the
    cross-context distillation; the headers hold the published numbers and the student init."""
    ablations = {p.stem: p for p in CONFIGS if "ablations" in p.parts}
    same = {"base": "table2-base", "ours": "table2-both"}
    for pair, (base, ours, init) in TABLE3.items():
        for row, published in (("base", base), ("ours", ours)):
            path = ablations.pop(f"table3-{pair}-{row}")
            header = path.read_text().split("\nsteps:")[0]
            assert f"ETH3D / DIODE AbsRel: {published[1]} / {published[0]}" in header
            assert f"--init {init}" in header.replace("depth-anything/", "")
            settings = load_config(TrainSettings, path)
            assert settings == load_config(TrainSettings, ROOT / "ablations" / f"{same[row]}.yaml")
    assert not [name for name in ablations if name.startswith("table3")]


def test_a_config_without_any_distillation_term_is_refused(tmp_path):
    path = tmp_path / "none.yaml"
    path.write_text("loss:\n  shared_context: false\n  local_global: false\n")
    with pytest.raises(ValueError, match="no distillation term"):
        load_config(TrainSettings, path)


def test_teacher_lists_parse():
    from labelgen.teachers import load_teacher_specs_yaml

    specs = load_teacher_specs_yaml(ROOT / "teachers" / "paper.yaml")
    assert [(s.name, s.adapter) for s in specs] == [
        ("dav2-large", "depth-anything-v2"),
        ("genpercept", "genpercept"),
    ]
