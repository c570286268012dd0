"""A run on an empty kernel cache compiles its kernels in a background thread while its data loads, and trains
exactly the weights of a run that compiles nothing ahead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.train.test_fit import write_blobs

REPO = Path(__file__).resolve().parents[2]

# trains the blobs spec (dropout included, so its random stream is checked too) for one epoch; prints whether
# the cache was empty, the threads that compiled a kernel, and the weights
TRAIN = """
import json, sys, threading
from pathlib import Path
from numba.core import event
from dlcli.kernels.cache import holds_no_kernels
from tests.train.test_fit import fit, spec_doc, weights_digest

threads = set()

class CompilingThreads(event.Listener):
    def on_start(self, ev):
        threads.add(threading.current_thread().name)

    def on_end(self, ev):
        pass

event.register("numba:compile", CompilingThreads())
folder, run = Path(sys.argv[1]), Path(sys.argv[1]) / sys.argv[2]
empty = holds_no_kernels()
fit(spec_doc(folder / "blobs.npz", epochs=1), run)
print(json.dumps({"empty": empty, "threads": sorted(threads),
                  "weights": weights_digest(run / "checkpoints" / "last.safetensors")}))
"""


def _train(folder: Path, run: str, cache: Path) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": os.pathsep.join([str(REPO),
                                                                                     os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", TRAIN, str(folder), run], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_an_empty_cache_compiles_in_the_background_and_trains_the_same_weights(tmp_path: Path) -> None:
    write_blobs(tmp_path / "blobs.npz")
    cache = tmp_path / "numba-cache"
    cold = _train(tmp_path, "cold", cache)
    assert cold["empty"] and "dlcli-precompile" in cold["threads"]
    warm = _train(tmp_path, "warm", cache)  # the same cache, now filled: nothing to compile, no thread
    assert not warm["empty"] and warm["threads"] == []
    assert cold["weights"] == warm["weights"]
