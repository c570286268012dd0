"""`python -m dlcli` runs the command line."""

from dlcli.cli.main import main

main()
