"""A spec document as key paths: what resume's check, dlcli compare and the loggers' parameters name."""

from __future__ import annotations

from dlcli.spec.keys import flatten_keys, key_differences, spec_changes

LOGGERS = [{"type": "csv", "filename": "log.csv"}, {"type": "tensorboard", "update_freq": "epoch"}]


def test_flatten_keys_names_tables_and_list_entries_and_keeps_plain_lists_whole() -> None:
    document = {"train": {"optimizer": {"learning_rate": 0.001}, "metrics": ["accuracy"], "loggers": LOGGERS}}
    assert flatten_keys(document) == {
        "train.optimizer.learning_rate": 0.001, "train.metrics": ["accuracy"],
        "train.loggers[0].type": "csv", "train.loggers[0].filename": "log.csv",
        "train.loggers[1].type": "tensorboard", "train.loggers[1].update_freq": "epoch"}


def test_a_list_of_tables_emptied_is_named_by_its_entries_alone() -> None:
    # before: "train.loggers: (unset) -> []" came first, as if the first run had no loggers
    with_loggers = {"train": {"loggers": LOGGERS, "epochs": 3}}
    without = {"train": {"loggers": [], "epochs": 3}}
    assert key_differences([with_loggers, without]) == [
        ("train.loggers[0].filename", ["log.csv", None]), ("train.loggers[0].type", ["csv", None]),
        ("train.loggers[1].type", ["tensorboard", None]), ("train.loggers[1].update_freq", ["epoch", None])]
    assert [key for key, *_ in spec_changes(without, with_loggers)] == [
        "train.loggers[0].filename", "train.loggers[0].type", "train.loggers[1].type",
        "train.loggers[1].update_freq"]


def test_differences_across_three_documents_and_an_empty_plain_list_still_counts() -> None:
    runs = [{"seed": 1, "metrics": []}, {"seed": 1, "metrics": ["accuracy"]}, {"seed": 2, "metrics": []}]
    assert key_differences(runs) == [("metrics", [[], ["accuracy"], []]), ("seed", [1, 1, 2])]
    assert key_differences([{"seed": 1}, {"seed": 1}]) == []
