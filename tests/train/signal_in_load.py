"""`python tests/train/signal_in_load.py ARGS...`: `dlcli train ARGS...` whose `.sigcsv` data file is read by a
CSV reader that sends this process a signal in the middle of the data load, a controlled point for
tests/train/test_interrupts.py, with what went wrong there in the field (QA s13, issues 1, 2 and 14):

  DLCLI_TEST_LOAD_SIGNAL=SIGINT|SIGTERM  the signal
  DLCLI_TEST_LOAD_MODE=plain             only the signal
                      =swallowed         code in the load catches a KeyboardInterrupt and reads on (pyarrow's
                                         to_numpy did: the run then trained to the end and exited 0)
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from dlcli import registry
from dlcli.data.readers.csv_file import CsvReader
from dlcli.data.table import Table


@registry.readers.register("signalling_csv")
class SignallingCsvReader(CsvReader):
    """A CSV reader that signals its own process while it reads (tests only)."""

    suffixes = (".sigcsv",)

    def table(self, path: Path) -> Table:
        """The file's columns; the signal comes once they are read."""
        table = super().table(path)
        signum = signal.Signals[os.environ["DLCLI_TEST_LOAD_SIGNAL"]]
        mode = os.environ.get("DLCLI_TEST_LOAD_MODE", "plain")
        try:
            os.kill(os.getpid(), signum)
            time.sleep(0.5)  # the rest of the load
        except KeyboardInterrupt:
            if mode != "swallowed":
                raise
        return table


if __name__ == "__main__":
    from dlcli.cli.entry import main

    sys.argv = ["dlcli", *sys.argv[1:]]
    main()
