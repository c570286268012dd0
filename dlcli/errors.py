"""User-fixable errors, each carrying the exit code the command line returns for it (see SPEC.md)."""

from __future__ import annotations


class DlcliError(Exception):
    """A problem the user can fix: printed as one paragraph, no traceback."""

    exit_code = 1


class SpecError(DlcliError):
    """The spec or the command line is wrong (exit 2, shared with click's usage errors)."""

    exit_code = 2


class UnknownNameError(SpecError):
    """A name that no registry entry has (a misspelt layer, loss, optimizer, ...)."""

    def __init__(self, kind: str, name: str, known: list[str], closest: str | None) -> None:
        hint = f" (did you mean {closest}?)" if closest else ""
        plural = kind + ("es" if kind.endswith("s") else "s")
        super().__init__(f"unknown {kind} {name!r}{hint}; known {plural}: {', '.join(known)}")
        self.kind, self.name, self.known, self.closest = kind, name, known, closest


class WeightTooLargeError(SpecError):
    """A layer's weights cannot fit in this machine's memory; the graph adds the layer's key to the message."""


class RunDirectoryTakenError(SpecError):
    """A run directory already holds a run or other files, or another process is writing it (exit 2)."""


class DataError(DlcliError):
    """Data is missing, corrupt, offline or of the wrong shape (exit 3)."""

    exit_code = 3


class CheckpointError(DlcliError):
    """A checkpoint is missing, corrupt or does not fit the spec (exit 4)."""

    exit_code = 4


class DivergedError(DlcliError):
    """The loss or a weight became NaN or infinite (exit 5)."""

    exit_code = 5


class RunInterruptedError(DlcliError):
    """Training stopped on SIGINT (exit 130) or SIGTERM (exit 143) after a checkpoint was written."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ExportCheckError(DlcliError):
    """`dlcli export --check`: the exported file's outputs differ from dlcli's own predict beyond the tolerance, or
    its runtime cannot run it (exit 1): the same checkpoint and examples through two implementations disagree,
    which is a defect in dlcli's exporter or the runtime, not in the spec (2), the data (3) or the checkpoint (4);
    scripts tell it from a crash by the `check` line or event printed before it."""

    exit_code = 1


class DistributedError(DlcliError):
    """The ranks of an MPI job disagree (weights diverged) or one stopped answering (exit 1)."""

    exit_code = 1


class RankKilledError(DlcliError):
    """A rank of a `--workers` job was killed by a signal, which ended the job: exit 128 + the signal's number, as a
    shell reports a process killed by it (137 for SIGKILL, the out-of-memory killer's signal)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class ResultMismatchError(DlcliError):
    """A command that checks results found them different: `dlcli reproduce` got weights that are not
    bit-identical to the original run's. Exit 1, as a failed export check: the same run trained twice
    disagrees, which is a defect (or a machine that differs), never the spec's, the data's or the checkpoint's;
    SPEC.md's list of exit codes stays as it is."""

    exit_code = 1
