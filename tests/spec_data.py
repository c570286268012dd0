"""The data the shipped specs read from specs/data/ (which the repository does not hold), made small, once per test
session, in one temporary folder: the .npz files of the data scripts in specs/ (graph, text, segmentation), the image specs' folders and a table in the Jena climate CSV's format, under the paths the
specs give relative to specs/data/."""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.jena_like import write_jena_like

REPO = Path(__file__).resolve().parents[1]
_MADE: list[Path] = []


def spec_data() -> Path:
    """The folder standing in for specs/data/ (made on the first call, removed when the test process exits)."""
    if not _MADE:
        folder = Path(tempfile.mkdtemp(prefix="dlcli-spec-data-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        for script, size in (("make_graph_data.py", ["--tickets", "100"]), ("make_text_data.py", ["--reviews", "100"]),
                             ("make_segmentation_data.py", ["--images", "20"])):
            subprocess.run([sys.executable, str(REPO / "specs" / script), "--out", str(folder), *size], check=True,
                           capture_output=True)
        subprocess.run([sys.executable, str(REPO / "specs" / "make_image_folder.py"), "--out",
                        str(folder / "digits_images"), "--limit", "60"], check=True, capture_output=True)
        _photos(folder / "cats_vs_dogs")
        write_jena_like(folder / "jena_climate_2009_2016.csv", rows=3600)  # the Jena spec's table, in its format
        _MADE.append(folder)
    return _MADE[0]


def spec_data_path(value: str | Path) -> Path:
    """Where a shipped spec's data path (data/NAME or data/FOLDER/NAME, relative to specs/) is in spec_data()."""
    parts = Path(value).parts
    return spec_data().joinpath(*parts[parts.index("data") + 1:] if "data" in parts else parts[-1:])


def init_from_checkpoint(value: str) -> Path:
    """A checkpoint standing in for a shipped spec's model.init_from run ("runs/NAME"): the initial weights of the
    shipped spec named NAME, so that validate, which reads init_from as train does, can check the spec."""
    from dlcli.checkpoint import save_checkpoint
    from dlcli.spec.load import load_spec
    from dlcli.train.checks import model_for_summary

    name = Path(value).name
    path = spec_data() / "runs" / f"{name}.safetensors"
    if not path.exists():
        spec = next(s for p in sorted((REPO / "specs").glob("*.toml")) if (s := load_spec(p)).name == name)
        model = model_for_summary(spec)
        arrays = {f"param/{key}": tensor.data for key, tensor in model.parameters().items()}
        arrays.update({f"state/{key}": array for key, array in model.state().items()})
        path.parent.mkdir(exist_ok=True)
        save_checkpoint(path, arrays, {})
    return path


def _photos(folder: Path) -> None:
    """A few JPEG photos of two classes, of several sizes, as the cats-vs-dogs spec reads them."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for part in ("train", "validation"):
        for label in ("cats", "dogs"):
            (folder / part / label).mkdir(parents=True)
            for index in range(4):
                size = (int(rng.integers(150, 260)), int(rng.integers(150, 260)))
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / part / label / f"{index}.jpg")
