"""Train/held-out splits of the task list: seed (file order), official (id file), stratified."""

from __future__ import annotations

import random
from collections import defaultdict

from chimera_core.data.tasks import ResearchTask
from chimera_core.errors import DataError


def _require_nonempty(
    tasks: list[ResearchTask], splits: tuple[str, ...], source: str, why: str
) -> list[ResearchTask]:
    """Refuse a split with an empty side: training or evaluating on nothing is never meant."""
    sizes = {name: sum(t.split == name for t in tasks) for name in splits}
    if empty := [name for name, n in sizes.items() if n == 0]:
        shown = ", ".join(f"{n} {name}" for name, n in sizes.items())
        raise DataError(
            f"{source}: {why} leaves the {' and '.join(empty)} split empty ({shown} of "
            f"{len(tasks)} tasks); nothing was published"
        )
    return tasks


def seed_split(
    tasks: list[ResearchTask], train_fraction: float, source: str = "the dataset"
) -> list[ResearchTask]:
    """First ``train_fraction`` in source order is train, the rest validation (the write-up's)."""
    n_train = round(len(tasks) * train_fraction)
    split = [
        t.model_copy(update={"split": "train" if i < n_train else "validation"})
        for i, t in enumerate(tasks)
    ]
    why = f"data.train_fraction {train_fraction}"
    return _require_nonempty(split, ("train", "validation"), source, why)


def official_split(
    tasks: list[ResearchTask], test_ids: set[str], source: str = "the test ids"
) -> list[ResearchTask]:
    """PQA-L's official split: the given PMIDs are test, every other task is train."""
    known = {t.id for t in tasks}
    if missing := sorted(test_ids - known):
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(
            f"{len(missing)} of {len(test_ids)} test id(s) in {source} are not in the dataset "
            f"({shown}); the official split needs the whole PQA-L set (or data.test_ids_file)"
        )
    split = [t.model_copy(update={"split": "test" if t.id in test_ids else "train"}) for t in tasks]
    why = f"the official split with its {len(test_ids)} test id(s)"
    return _require_nonempty(split, ("train", "test"), source, why)


def stratified_split(
    tasks: list[ResearchTask], train_fraction: float, seed: int, source: str = "the dataset"
) -> list[ResearchTask]:
    """Seeded per-label split keeping label proportions; source order is kept."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for t in tasks:
        by_label[t.expected_decision].append(t.id)
    rng = random.Random(seed)
    train: set[str] = set()
    for label in sorted(by_label):
        ids = by_label[label]
        rng.shuffle(ids)
        train.update(ids[: round(len(ids) * train_fraction)])
    split = [
        t.model_copy(update={"split": "train" if t.id in train else "validation"}) for t in tasks
    ]
    why = f"data.train_fraction {train_fraction}"
    return _require_nonempty(split, ("train", "validation"), source, why)
