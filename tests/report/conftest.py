from __future__ import annotations

from collections.abc import Iterator

import pytest

from kexue.report import list_experiments, unregister_experiment


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Unregister experiments a test registered."""
    before = {experiment.name for experiment in list_experiments()}
    yield
    for experiment in list_experiments():
        if experiment.name not in before:
            unregister_experiment(experiment.name)
