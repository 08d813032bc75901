"""The document schema of a faro-bluesky run: stream names, event fields, frame kinds.

Plans write these names and analysis, status and storage read them, often in another
process or years later (a replay, a re-analysis). Spelled as string literals in each
layer, a rename made in one place left the others reading defaults without a word; so
every name is defined here once, and readers parse events with `VisitFields` and
`MaskFields`, which raise `SchemaError` naming the field when one is missing or unknown
(docs/decisions/0046-document-schema.md).

Event data keys are ``<device name>-<signal name>``, as ophyd-async names them: the plan's
`VisitTag` is named `VISIT`, so its ``t`` signal reads as ``visit-t``. This module imports
nothing from the rest of faro_bluesky: every layer may import it.

The analyzer contract (`MaskSource`, `SummarySource`, `ClosedLoopAnalyzer`...) lives here
too: the protocols through which the plan, its validation and the status talk to an
analyzer (`_contract`, docs/decisions/0050-analyzer-split.md).
"""

from ._contract import (
    AnalysisNeeds,
    Closable,
    ClosedLoopAnalyzer,
    DocumentSink,
    MaskSource,
    MaskTimes,
    MaskTiming,
    QueueReporter,
    Requirements,
    SummarySource,
    contract_problems,
    mask_source,
    provides_masks,
)
from ._events import MaskFields, VisitFields
from ._names import (
    MASK,
    MISSED,
    VISIT,
    FrameField,
    FrameKind,
    MaskField,
    MissedField,
    SchemaError,
    Stream,
    VisitField,
)
from ._summary import SUMMARY_FIELDS, SummaryField, VisitSummary

__all__ = [
    "MASK",
    "MISSED",
    "SUMMARY_FIELDS",
    "VISIT",
    "AnalysisNeeds",
    "Closable",
    "ClosedLoopAnalyzer",
    "DocumentSink",
    "FrameField",
    "FrameKind",
    "MaskField",
    "MaskFields",
    "MaskSource",
    "MaskTimes",
    "MaskTiming",
    "MissedField",
    "QueueReporter",
    "Requirements",
    "SchemaError",
    "Stream",
    "SummaryField",
    "SummarySource",
    "VisitField",
    "VisitFields",
    "VisitSummary",
    "contract_problems",
    "mask_source",
    "provides_masks",
]
