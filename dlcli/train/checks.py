"""What `dlcli validate` and `dlcli summary` check without training: the model builds, the data fits it."""

from __future__ import annotations

import numpy as np

from dlcli import registry
from dlcli.data import list_datasets  # noqa: F401 - imports the catalog, which fills registry.datasets
from dlcli.errors import DataError, SpecError
from dlcli.graph import Model, build_model
from dlcli.spec.models import RunSpec
from dlcli.train.datasets import check_split, read_split


def model_for_summary(spec: RunSpec) -> Model:
    """The spec's model, built and shape-checked (weights drawn from the spec's seed)."""
    return build_model(spec.model, np.random.default_rng(spec.seed), spec)


def check_data_files(spec: RunSpec, model: Model) -> None:
    """The dataset is registered, or each data file exists, reads, and fits the model's inputs and outputs.

    Problems are spec errors here (exit 2): validate answers "is this spec ready to train?".
    """
    data = spec.data
    if data.dataset is not None:
        registry.datasets.entry(data.dataset)  # an unknown name raises the did-you-mean error
        return
    for key in ("train", "validation", "test"):
        path = getattr(data, key)
        if path is None:
            continue
        try:
            check_split(read_split(path, data, model), model, key, data.one_hot)
        except DataError as err:
            raise SpecError(f"data.{key}: {err}") from None
