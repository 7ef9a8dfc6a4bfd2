"""`pipeline bench world-metric`: the image-blind metric priors, and the study end to end at its
smoke scale (every step a user's command, the teacher given each view's focal length, both arms
scored metric and scale-shift, a second run resumes)."""

from __future__ import annotations

import json
import re
import tarfile

import numpy as np
import pytest

from evaluation.bench.world import NO_CONCLUSION
from evaluation.bench.world_metric import main
from evaluation.study.metric import write_metric_prior
from evaluation.study.metric_report import verdict, world_scores
from evaluation.study.priors import load_split
from pipeline.world.files import WorldSettings, render_world


def test_metric_priors_ignore_the_image_and_are_in_metres(tmp_path):
    train, test = tmp_path / "train", tmp_path / "test"
    render_world(train, 3, WorldSettings(seed=1, height=48, width=64), workers=1, progress=False)
    render_world(test, 2, WorldSettings(seed=2, height=48, width=72), workers=1, progress=False)
    samples = load_split(train)
    median = float(np.median(np.concatenate([s.depth[s.valid_mask] for s in samples])))
    flat = write_metric_prior(tmp_path / "flat", "prior-median-depth", samples, test)
    layout = write_metric_prior(tmp_path / "map", "prior-depth-map", samples, test)
    for key in ("000000", "000001"):
        pred = np.load(flat / "predictions" / "world" / f"{key}.npy")
        assert pred.shape == (48, 72) and np.allclose(pred, median)
    maps = [np.load(layout / "predictions" / "world" / f"{k}.npy") for k in ("000000", "000001")]
    assert np.array_equal(maps[0], maps[1])  # the same map whatever the image shows
    assert maps[0].shape == (48, 72) and maps[0].std() > 0  # the average layout, not a constant
    assert json.loads((flat / "prior.json").read_text())["median_depth"] == pytest.approx(median)
    with pytest.raises(ValueError, match="unknown metric prior"):
        write_metric_prior(tmp_path / "x", "prior-ramp", samples, test)


@pytest.mark.slow
def test_world_metric_study_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "study"
    # smoke models train 2 steps against priors of 6 images: the verdict may go either way, and
    # the exit status says the same as the report
    status = main(["--out", str(out), "--scale", "smoke", "--jobs", "2"])
    text = (out / "report.md").read_text()
    if status == NO_CONCLUSION:
        assert "do NOT beat it" in text and "No conclusion" in text
    else:
        assert status == 0 and "they beat it" in text and "one seed, no spread" in text
    for name in ("teacher m1", "student `canonical`", "student `raw`"):
        rows = [line for line in text.splitlines() if line.startswith(f"| {name}")]
        assert len(rows) == 2  # the test split and the other image shape
        assert all(len(re.findall(r"\| \d+\.\d{3} ", row)) == 4 for row in rows), rows
    log = (out / "commands.log").read_text()
    assert "--set=student.output=metric" in log and "--set=student.canonical_focal=null" in log
    # the teacher labelled every view with its own focal length (given, not estimated)
    labels = out / "data" / "students" / "labels" / "m1"
    assert json.loads((labels / "manifest.json").read_text())["output_kind"] == "metric_depth"
    with tarfile.open(labels / "000000.tar") as shard:
        records = [
            json.loads(shard.extractfile(m).read())
            for m in shard.getmembers()
            if m.name.endswith(".json") and not m.name.startswith("__")
        ]
    views = [v for r in records for v in r["focal"].values()]
    assert len(records) == 4 and views and not any(v["estimated"] for v in views)
    scores = world_scores(out / "eval" / "canonical-s0" / "summary.json")
    assert set(scores) == {"none", "scale-shift"}
    trained = log.count("$ student train")
    main(["--out", str(out), "--scale", "smoke", "--jobs", "2"])
    assert (out / "commands.log").read_text().count("$ student train") == trained


class FakeStudy:
    """The parts of a metric study the verdict reads: scored evaluation directories."""

    def __init__(self, root, seeds: int) -> None:
        self.root, self.seeds = root, seeds

    def path(self, *parts):
        return self.root.joinpath(*parts)

    @staticmethod
    def eval_name(name: str, split: str = "test") -> str:
        return name if split == "test" else f"{name}@{split}"

    def student_names(self):
        return [(f"{a}-s{k}", a, k) for a in ("canonical", "raw") for k in range(self.seeds)]

    def score(self, name: str, abs_rel: float) -> None:
        out = self.path("eval", name)
        out.mkdir(parents=True)
        world = {"world": {"abs_rel": abs_rel, "delta1": 0.5}}
        summary = {"settings": {"alignment": "none"}, "datasets": world}
        summary["by_alignment"] = {"none": world, "scale-shift": world}
        (out / "summary.json").write_text(json.dumps(summary))


@pytest.mark.parametrize(
    ("canonical", "raw", "beats", "says"),
    [
        ([0.40, 0.42], [0.60, 0.61], True, "+0.195 AbsRel (more than twice the larger seed spread"),
        ([0.40, 0.42], [0.43, 0.40], True, "(within twice the larger seed spread"),
        ([0.55, 0.57], [0.60, 0.61], False, "do NOT beat it. No conclusion"),
        ([0.40], [0.60], True, "one seed, no spread"),
    ],
)
def test_the_verdict_needs_the_prior_beaten_and_weighs_the_control_by_the_seed_spread(
    tmp_path, canonical, raw, beats, says
):
    study = FakeStudy(tmp_path, len(canonical))
    study.score("prior-median-depth", 0.60)
    study.score("prior-depth-map", 0.50)
    for k, (c, r) in enumerate(zip(canonical, raw, strict=True)):
        study.score(f"canonical-s{k}", c)
        study.score(f"raw-s{k}", r)
    text, beaten = verdict(study)
    assert beaten is beats and says in text, text
    assert "0.500" in text  # the better prior is the one compared with
