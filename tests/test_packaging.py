"""The built wheel: what `pip install dlcli` (not an editable install of the checkout) gives a user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# run by the installed copy, from a folder outside the checkout: every bundled dataset loads, and its card is there
_LOAD_BUNDLED = """
import json, dlcli
from dlcli import registry
from dlcli.data.catalog import bundled_dir, load_dataset
loaded = {}
for entry in registry.datasets:
    info = entry.target.info
    if info.bundled:
        loaded[info.name] = len(load_dataset(info.name).x_train)
print(json.dumps({"package": dlcli.__file__, "loaded": loaded,
                  "files": sorted(p.name for p in bundled_dir().iterdir())}))
"""


def test_the_wheel_carries_the_bundled_datasets_with_their_cards(tmp_path: Path) -> None:
    # build from a copy, so the build's own folders (build/, *.egg-info) never land in the checkout
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "dlcli", source / "dlcli", ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    subprocess.run([sys.executable, "-c", "from setuptools import build_meta; build_meta.build_wheel('wheel')"],
                   cwd=source, check=True, capture_output=True)
    [wheel] = (source / "wheel").glob("dlcli-*.whl")
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:  # a wheel unpacked as is: what `pip install --target` does
        archive.extractall(installed)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed)}
    env.pop("DLCLI_BUNDLED_DATASETS", None)
    result = subprocess.run([sys.executable, "-c", _LOAD_BUNDLED], cwd=elsewhere, env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["package"]).is_relative_to(installed)
    assert report["loaded"] == {"boston_housing": 404, "breast_cancer": 455, "diabetes": 353, "digits": 1437,
                                "iris": 120, "wine": 142}
    # the licence and attribution travel with the data
    assert {"README.md", "digits.rst", "iris.rst", "wine_data.rst", "breast_cancer.rst", "diabetes.rst",
            "boston_house_prices.rst"} <= set(report["files"])
