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


# a thread that skips kernels another process compiles runs a kernel through in_parts on two threads while that
# kernel's claim is held: the parts thread must skip it as well. Waiting for the claim, it held Numba's compiler
# lock, so the caller (train/precompile.py's thread) skipped the kernel but then stood idle at its next one until
# the other process had compiled the first:
# segmentation_toy's thread waited 1.15 s for the child's tile_transform (benchmarks/compile_time.py --timeline).
PARTS_MEET_A_CLAIM = """
import fcntl, json, threading
import numba
import numpy as np
from numba import typeof
from dlcli.kernels.cache import ClaimedElsewhereError, _claim_path, claimed_kernels_skipped, \\
    share_compiles_between_processes
from dlcli.kernels.conv import bias_activation_rows
from dlcli.kernels.parts import in_parts
from dlcli.kernels.sparse import scatter_add_rows

assert share_compiles_between_processes()
numba.set_num_threads(2)
out, bias = np.zeros((8, 4), np.float32), np.ones(4, np.float32)
claim_path = _claim_path(bias_activation_rows._cache, tuple(typeof(a) for a in (out, bias, 0, 0, 8)))
claim_path.parent.mkdir(parents=True, exist_ok=True)
claim = open(claim_path, "a")
fcntl.flock(claim, fcntl.LOCK_EX)
seen = {}

def call():
    try:
        with claimed_kernels_skipped():
            in_parts(bias_activation_rows, 8, out, bias, 0)
        seen["parts"] = "ran"
    except ClaimedElsewhereError:
        seen["parts"] = "skipped"
    with claimed_kernels_skipped():  # the caller's next kernel, claimed by nobody: compiled here at once
        scatter_add_rows(np.zeros((3, 2), np.float32), np.array([0, 2, 0]), np.ones((3, 2), np.float32))
    seen["next"] = "ran"

caller = threading.Thread(target=call)
caller.start()
caller.join(20)
seen["stalled"] = caller.is_alive()
claim_path.unlink()
claim.close()
caller.join(300)
seen["after"] = float(out.sum())  # the kernel ran once the claim went only where it was waited for
print(json.dumps(seen))
"""


def test_a_kernel_run_in_parts_is_skipped_on_every_thread_while_another_process_compiles_it(tmp_path: Path) -> None:
    import json

    out = subprocess.run([sys.executable, "-c", PARTS_MEET_A_CLAIM], cwd=REPO,
                         env={**_env(tmp_path / "numba-cache"), "NUMBA_NUM_THREADS": "2"},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"parts": "skipped", "next": "ran", "stalled": False,
                                                       "after": 0.0}
