"""Two processes filling one kernel cache (kernels/cache.py): a signature another process is compiling is
waited for and loaded, not compiled twice; and the cache still says whether it holds any kernel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# holds the claim of scatter_add_rows' float32 signature (as a sharing process would while compiling it), says so,
# and only then compiles it (an ordinary process: its own compile takes no claim) and lets the claim go
HOLDER = """
import fcntl, sys, time
import numpy as np
from numba import typeof
from dlcli.kernels import cache
from dlcli.kernels.sparse import scatter_add_rows

args = (np.zeros((3, 2), np.float32), np.array([0, 2, 0]), np.ones((3, 2), np.float32))
path = cache._claim_path(scatter_add_rows._cache, tuple(typeof(a) for a in args))
path.parent.mkdir(parents=True, exist_ok=True)
with open(path, "a") as claim:
    fcntl.flock(claim, fcntl.LOCK_EX)
    print("claimed", flush=True)
    time.sleep(1.5)
    scatter_add_rows(*args)
    path.unlink()  # released as a sharing process releases it: the file goes first
"""

# shares compiles, calls the kernel, prints the result and the kernels it compiled itself
SHARER = """
import json
import numpy as np
from numba.core import event
from dlcli.kernels.cache import share_compiles_between_processes
from dlcli.kernels.sparse import scatter_add_rows

compiled = []

class Compiled(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__name__)

    def on_end(self, ev):
        pass

event.register("numba:compile", Compiled())
assert share_compiles_between_processes()
out = np.zeros((3, 2), np.float32)
scatter_add_rows(out, np.array([0, 2, 0]), np.arange(6, dtype=np.float32).reshape(3, 2))
print(json.dumps({"out": out.tolist(), "compiled": compiled}))
"""


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def test_a_signature_another_process_compiles_is_waited_for_and_loaded(tmp_path: Path) -> None:
    import json

    cache = tmp_path / "numba-cache"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], env=_env(cache), cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        sharer = subprocess.run([sys.executable, "-c", SHARER], env=_env(cache), cwd=REPO, capture_output=True,
                                text=True, timeout=300)
    finally:
        holder.wait(300)
    assert holder.returncode == 0 and sharer.returncode == 0, sharer.stderr
    result = json.loads(sharer.stdout.splitlines()[-1])
    assert result["out"] == [[4.0, 6.0], [0.0, 0.0], [2.0, 3.0]]  # rows 0 and 2 of values added into row 0
    assert "scatter_add_rows" not in result["compiled"]  # loaded from the holder's save
    assert not list(cache.rglob("dlcli-claim-*"))  # a released claim leaves no file behind


def test_without_another_process_a_sharing_process_compiles_and_leaves_no_claim(tmp_path: Path) -> None:
    import json

    cache = tmp_path / "numba-cache"
    sharer = subprocess.run([sys.executable, "-c", SHARER], env=_env(cache), cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert sharer.returncode == 0, sharer.stderr
    result = json.loads(sharer.stdout.splitlines()[-1])
    assert result["out"] == [[4.0, 6.0], [0.0, 0.0], [2.0, 3.0]] and "scatter_add_rows" in result["compiled"]
    assert list(cache.rglob("sparse.scatter_add_rows-*.nbi")) and not list(cache.rglob("dlcli-claim-*"))
