"""Progress of long jobs: a bar on a terminal; in a log, plain lines at a fixed interval (and every
N units) and a last one; nothing when disabled. Through `pipeline prepare` as a log sees it."""

from __future__ import annotations

import io

from typer.testing import CliRunner

from pipeline.cli import app as pipeline_app
from pipeline.toolkit import progress as progress_module
from pipeline.toolkit.progress import duration, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_it_writes_a_line_every_n_units_and_a_last_one():
    log = io.StringIO()
    with progress_bar(10, "train", "steps", every=4, interval=1e9, stream=log) as bar:
        for step in range(10):
            bar.set_status(f"loss {step}")
            bar.update()
    lines = log.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "train: 4/10 steps (40%)",
        "train: 8/10 steps (80%)",
        "train: 10/10 steps (100%)",
    ]
    assert lines[0].endswith("| loss 3") and lines[-1].endswith("| loss 9")
    assert "\r" not in log.getvalue() and "left" in lines[0] and "left" not in lines[-1]


def test_in_a_log_it_writes_a_line_at_the_interval(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(progress_module, "LINE_INTERVAL_S", 0.0)  # every update is due
    bar = progress_bar(3, "predict nyu", "img", initial=1, stream=log)
    bar.update()
    bar.update()
    bar.close()
    bar.close()  # closing twice writes nothing more
    assert log.getvalue().splitlines()[0].startswith("predict nyu: 2/3 img (66%), ")
    assert len(log.getvalue().splitlines()) == 2


def test_disabled_it_shows_nothing_and_a_terminal_gets_a_bar():
    log = io.StringIO()
    bar = progress_bar(3, "verify", "shard", enabled=False, stream=log)
    assert list(bar.iterate(range(3))) == [0, 1, 2] and bar.n == 3
    assert log.getvalue() == ""
    terminal = Terminal()
    with progress_bar(3, "verify", "shard", stream=terminal) as bar:
        bar.update(3)
    assert "\r" in terminal.getvalue() and "3/3" in terminal.getvalue()


def test_unknown_total_and_durations():
    log = io.StringIO()
    with progress_bar(None, "render", "img", stream=log) as bar:
        bar.update(2)
    assert log.getvalue().startswith("render: 2 img, ")
    assert [duration(s) for s in (42, 129, 6300)] == ["42s", "2m09s", "1h45m"]


def test_prepare_in_a_log_writes_progress_lines_not_a_bar(photo_folder, tmp_path):
    args = ["prepare", "--images", str(photo_folder), "--out", str(tmp_path / "ds")]
    result = CliRunner().invoke(pipeline_app, [*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output
    assert "prepare: 5/5 img (100%), " in result.output


def test_prepare_reports_its_images_per_second_only_with_progress_on(
    photo_folder, tmp_path, capsys
):
    from pipeline.dataset.prepare import PrepareSettings, prepare

    settings = PrepareSettings(shard_size=3)
    prepare([str(photo_folder)], tmp_path / "quiet", settings, progress=False, workers=1)
    assert "img/s" not in capsys.readouterr().err
    prepare([str(photo_folder)], tmp_path / "ds", settings, progress=True, workers=1)
    assert "img/s" in capsys.readouterr().err


def test_every_long_job_takes_no_progress_and_then_shows_none(photo_folder, tmp_path):
    """The launch option `--no-progress` of prepare, verify and evaluation's scoring (as a log
    sees them: with progress on, each writes its lines)."""
    import numpy as np

    from evaluation.cli import app as evaluation_app
    from evaluation.datasets import open_dataset

    dataset = tmp_path / "ds"
    key = open_dataset("middlebury").keys()[0]
    prediction = tmp_path / "eval" / "predictions" / "middlebury" / f"{key}.npy"
    prediction.parent.mkdir(parents=True)
    np.save(prediction, np.ones((50, 74), dtype=np.float32))
    score = ["score", str(tmp_path / "eval"), "--dataset", "middlebury", "--workers", "0"]
    score += ["--pred-space", "disparity"]
    prepare = ["prepare", "--images", str(photo_folder), "--out", str(dataset)]
    commands = [(pipeline_app, prepare), (pipeline_app, ["verify", str(dataset)])]
    commands.append((evaluation_app, score))
    for app, args in commands:
        quiet = CliRunner().invoke(app, [*args, "--no-progress"])
        assert quiet.exit_code == 0, quiet.output
        assert "(100%)" not in quiet.output, (args, quiet.output)
        shown = CliRunner().invoke(app, args)
        assert shown.exit_code == 0 and "(100%)" in shown.output, (args, shown.output)
