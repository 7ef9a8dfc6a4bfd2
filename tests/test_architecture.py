"""Import direction (DESIGN.md): `pipeline` imports no stage; `student` never imports `labelgen`."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import importlib, pkgutil, sys
package = importlib.import_module("{package}")
for mod in pkgutil.walk_packages(package.__path__, "{package}."):
    if mod.name.endswith("__main__"):
        continue
    importlib.import_module(mod.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in {forbidden})
print(bad)
sys.exit(1 if bad else 0)
"""


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("pipeline", {"labelgen", "student", "evaluation"}), ("student", {"labelgen", "evaluation"})],
)
def test_import_direction(package, forbidden):
    code = CHECK.format(package=package, forbidden=sorted(forbidden))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, f"{package} imports {done.stdout.strip()} {done.stderr[-2000:]}"
