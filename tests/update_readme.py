"""Regenerate README.md's settings reference from the code:

    python tests/update_readme.py

`tests/test_readme.py` checks, read-only, that the README holds exactly what this writes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- settings-reference:start -->", "<!-- settings-reference:end -->"
BLOCK = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)


def sections() -> list[tuple[str, type]]:
    from evaluation.predict import PredictSettings
    from evaluation.score import ScoreSettings
    from labelgen.settings import RunSettings
    from pipeline.dataset.prepare import PrepareSettings
    from pipeline.toolkit.launch import Launch
    from student.config import TrainSettings

    return [
        (
            "`student train` (`--config FILE`, `--set key=value`, `--steps`, `--batch-size`)",
            TrainSettings,
        ),
        ("`labelgen run` / `estimate` (flags)", RunSettings),
        ("`pipeline prepare` (flags)", PrepareSettings),
        ("`evaluation predict` / `run` (flags)", PredictSettings),
        ("`evaluation score` / `run` (flags)", ScoreSettings),
        ("Launch options: `--device`, `--workers`, `--precision`, `--progress` (flags)", Launch),
    ]


def settings_reference() -> str:
    """The block between the README's markers, markers included."""
    from pipeline.toolkit.settings_doc import settings_markdown

    parts = [f"### {title}\n\n{settings_markdown(cls)}" for title, cls in sections()]
    return f"{START}\n" + "\n\n".join(parts) + f"\n{END}"


def main() -> int:
    text = README.read_text()
    if not BLOCK.search(text):
        print(f"{README}: no {START} ... {END} block to fill", file=sys.stderr)
        return 2
    updated = BLOCK.sub(lambda _: settings_reference(), text, count=1)
    if updated != text:
        README.write_text(updated)
    print(f"{README}: settings reference {'updated' if updated != text else 'already current'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
