"""The command line's side of MPI: what `--workers` passes on of mpiexec's output, and what it reads there."""

from __future__ import annotations

import io

from dlcli.cli.distributed import LauncherOutput

# MPICH 5.0.2's mpiexec (hydra, -print-all-exitcodes) after rank 1 of a --json job was killed with SIGKILL
HYDRA_KILLED = """{"event": "start", "run": "big"}

===================================================================================
=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES
=   PID 20638 RUNNING AT vm
=   EXIT CODE: 9
=   CLEANING UP REMAINING PROCESSES
=   YOU CAN IGNORE THE BELOW CLEANUP MESSAGES
===================================================================================
[mpiexec@vm] Exit codes: [vm] 0,9
YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)
This typically refers to a problem with your application.
Please see the FAQ page for debugging suggestions
"""


def _read(text: str) -> tuple[LauncherOutput, str]:
    out = io.StringIO()
    output = LauncherOutput(out)
    for line in text.splitlines(keepends=True):
        output.feed(line)
    output.close()
    return output, out.getvalue()


def test_hydras_report_of_a_killed_rank_is_read_and_not_passed_on() -> None:
    output, passed = _read(HYDRA_KILLED)
    assert passed == '{"event": "start", "run": "big"}\n'
    assert output.killed_by == 9 and output.statuses == [0, 9] and output.killed_rank() == 1


def test_the_ranks_output_passes_unchanged_blank_lines_included() -> None:
    text = 'epoch=1/2 loss=0.5\n\n  indented\n\nepoch=2/2 loss=0.4\n\n'
    output, passed = _read(text + "[mpiexec@vm] Exit codes: [vm] 0,0\n")
    assert passed == text and output.killed_by == 0 and output.statuses == [0, 0]
    assert output.killed_rank() is None
