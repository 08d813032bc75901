"""The analyzer contract: which roles an object plays, checked where it is plugged in."""

from __future__ import annotations

import pytest

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis.components import WholeField
from faro_bluesky.plans._arguments import check_arguments
from faro_bluesky.schema import (
    Closable,
    ClosedLoopAnalyzer,
    DocumentSink,
    MaskSource,
    QueueReporter,
    Requirements,
    SummarySource,
    contract_problems,
    mask_source,
    provides_masks,
)


def arguments_with(analyzer):
    return check_arguments(
        [(0, 0)],
        [],
        analyzer=analyzer,
        per_visit=(),
        md=None,
        time_per_fov=None,
        stim_mask=None,
        mask_timeout=None,
    )


def test_the_analyzer_plays_every_role():
    with Analyzer(stimulator=WholeField(), mask_timeout=12.0) as analyzer:
        for role in (ClosedLoopAnalyzer, MaskSource, SummarySource, QueueReporter, Closable):
            assert isinstance(analyzer, role), role
        assert isinstance(analyzer, DocumentSink)
        assert mask_source(analyzer) is analyzer and provides_masks(analyzer)
        assert contract_problems(analyzer) == []
        needs = Requirements.of(analyzer)
        assert needs.channels == analyzer.required_channels
        assert needs.stim_metadata == analyzer.required_stim_metadata
    with Analyzer() as plain:  # no stimulator: a mask source that provides none
        assert isinstance(plain, MaskSource) and mask_source(plain) is None
        assert not provides_masks(plain)


def test_partial_roles_are_allowed_and_requirements_optional():
    class OnlyQueues:
        def queue_stats(self):
            return {"frames": 1}

    class NeedsMeta:
        required_metadata = frozenset({"stim_fraction"})

    assert isinstance(OnlyQueues(), QueueReporter)
    assert not isinstance(OnlyQueues(), MaskSource | SummarySource | DocumentSink)
    assert contract_problems(OnlyQueues()) == []
    assert Requirements.of(NeedsMeta()) == Requirements(metadata=frozenset({"stim_fraction"}))
    assert Requirements.of(None) == Requirements()


def test_a_role_claimed_but_not_played_is_refused_before_the_run():
    class SaysMasks:
        provides_masks = True

        def __call__(self, name, doc):
            pass

    class HalfSummaries:
        def __call__(self, name, doc):
            pass

        def pop_summaries(self):
            return []

    (masks,) = contract_problems(SaysMasks())
    assert "provides_masks" in masks and "get_mask, mask_timeout" in masks
    assert provides_masks(SaysMasks()) and mask_source(SaysMasks()) is None
    (summaries,) = contract_problems(HalfSummaries())
    assert "pending_summaries, wait_idle" in summaries
    for fake, needle in ((SaysMasks(), "MaskSource"), (HalfSummaries(), "SummarySource")):
        problems = arguments_with(fake).problems
        assert any(needle in p for p in problems), problems


@pytest.mark.parametrize("analyzer", [print, lambda name, doc: None])
def test_any_callable_is_a_document_sink(analyzer):
    assert isinstance(analyzer, DocumentSink)
    assert arguments_with(analyzer).problems == []
