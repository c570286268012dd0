"""Adds every subcommand to the group; each lives in its own module."""

from dlcli.cli.datasets import datasets_command
from dlcli.cli.evaluate import evaluate_command
from dlcli.cli.inspect import list_command, summary_command, validate_command
from dlcli.cli.main import cli
from dlcli.cli.predict import predict_command
from dlcli.cli.profile import profile_command
from dlcli.cli.schema import schema_command
from dlcli.cli.train import train_command
from dlcli.cli.warmup import warmup_command

for command in (train_command, evaluate_command, predict_command, validate_command, summary_command,
                datasets_command, list_command, schema_command, warmup_command, profile_command):
    cli.add_command(command)
