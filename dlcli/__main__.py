"""`python -m dlcli` runs the command line."""

from dlcli.cli.entry import main

main()
