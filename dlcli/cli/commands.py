"""Adds every subcommand to the group; each lives in its own module."""

from dlcli.cli.compare import compare_command
from dlcli.cli.datasets import datasets_command
from dlcli.cli.debug import debug_command
from dlcli.cli.evaluate import evaluate_command
from dlcli.cli.export import export_command
from dlcli.cli.inspect import list_command, summary_command, validate_command
from dlcli.cli.log import log_command
from dlcli.cli.lr_find import lr_find_command
from dlcli.cli.main import cli
from dlcli.cli.plot import plot_command
from dlcli.cli.predict import predict_command
from dlcli.cli.profile import profile_command
from dlcli.cli.reproduce import reproduce_command
from dlcli.cli.runs import runs_command
from dlcli.cli.schema import schema_command
from dlcli.cli.train import train_command
from dlcli.cli.tune import tune_command
from dlcli.cli.warmup import warmup_command

for command in (train_command, evaluate_command, predict_command, validate_command, summary_command,
                datasets_command, list_command, schema_command, runs_command,
                compare_command, plot_command, reproduce_command, log_command, export_command, tune_command,
                lr_find_command, warmup_command, profile_command, debug_command):
    cli.add_command(command)
