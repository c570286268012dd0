"""The command line: click commands; heavy modules are imported inside each command."""
