"""What `dlcli validate` and `dlcli summary` check without training: the model builds, the data fits it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli import registry
from dlcli.data.catalog import dataset_info, usable_offline  # the catalog's import fills registry.datasets
from dlcli.graph import Model, build_model
from dlcli.spec.models import RunSpec
from dlcli.train.datasets import Splits, load_splits


def model_for_summary(spec: RunSpec) -> Model:
    """The spec's model, built and shape-checked (weights drawn from the spec's seed)."""
    return build_model(spec.model, np.random.default_rng(spec.seed), spec)


def check_data_files(spec: RunSpec, model: Model) -> Splits | None:
    """The data files read, split and fit the model exactly as `train` would read them, and so a registry
    dataset that loads without a download; returns the splits read (None for a registry dataset that would
    need one: validate never downloads, and only checks the name then).

    Problems keep their own exit codes, the same as train gives: a data problem is a DataError (exit 3), named
    with its spec key (data.train, ...), so that validate's answer and train's agree.
    """
    data = spec.data
    if data.dataset is not None:
        registry.datasets.entry(data.dataset)  # an unknown name raises the did-you-mean error
        if not usable_offline(data.dataset):
            return None
    from dlcli.train.streams import Streams  # the validation hold-out train draws, so the same rows are held out

    return load_splits(spec, model, Streams(spec.seed).split)


def unread_dataset_note(name: str, spec_path: Path) -> str:
    """validate's note for a registry dataset that is not on this machine: its data was not checked, and how to
    get it (a spec that validates is otherwise read as "its data was found")."""
    size = dataset_info(name).size_bytes / 1e6
    return (f"data.dataset: {name} ({size:.1f} MB to download) is not on this machine, so its data was not checked "
            f"(validate never downloads); `dlcli warmup {spec_path}` or the first `dlcli train` downloads it into "
            f"the cache (DLCLI_CACHE), or set DLCLI_DATASETS_MIRROR to a folder holding its files")
