"""An MPI abort lets the launcher pass on the message written just before it (the watchdog's, a failed rank's)."""

from __future__ import annotations

import time

import pytest

from dlcli.train.distributed import MpiWorld
from dlcli.train.launcher import OUTPUT_GRACE_SECONDS


class RecordingComm:
    """Stands in for COMM_WORLD of a 2-rank job: records when Abort came, and what stderr held by then."""

    def __init__(self, capture: pytest.CaptureFixture[str]) -> None:
        self.capture, self.aborted = capture, None
        self.written_at: float | None = None

    def Get_rank(self) -> int:  # noqa: N802 - mpi4py's spelling
        return 0

    def Get_size(self) -> int:  # noqa: N802
        return 2

    def Abort(self, code: int) -> None:  # noqa: N802
        self.aborted = (code, time.monotonic(), self.capture.readouterr().err)


def test_the_watchdog_gives_its_message_time_to_get_out_before_aborting(capfd: pytest.CaptureFixture[str]) -> None:
    comm = RecordingComm(capfd)
    world = MpiWorld(comm, timeout=0.2, check_every=0)
    try:
        with world._collective("allreduce of gradients"):
            deadline = time.monotonic() + 5
            while comm.aborted is None and time.monotonic() < deadline:
                # when the message appears: the abort must come OUTPUT_GRACE_SECONDS after it, not at once
                if comm.written_at is None and "did not complete" in capfd.readouterr().err:
                    comm.written_at = time.monotonic()
                time.sleep(0.01)
    finally:
        world.close()
    assert comm.aborted is not None
    code, aborted_at, _ = comm.aborted
    assert code == 1
    assert comm.written_at is not None, "the message must be on stderr before the abort"
    assert aborted_at - comm.written_at >= OUTPUT_GRACE_SECONDS - 0.05
