"""Review queues: what the brain flagged, one list per kind of problem, and a person's verdict on each.

Each kind is an issue flag plus the field where its analysis left the evidence, sorted worst first:

==================  =====================================  ==========================================
kind                flagged by                             evidence (field) / order
==================  =====================================  ==========================================
duplicates          ``duplicate``, ``near_duplicate``      ``duplicates`` (group, reason)
leaks               ``leak``                               ``leak`` (with, with_value, reason)
outliers            ``outlier``                            ``scores`` / ``scores.outlier`` descending
label_errors        ``mislabeled``                         ``mislabel`` / ``mislabel.score`` descending
box_label_errors    ``mislabeled_box``                     the boxes' ``mislabel_score``
label_conflicts     ``label_conflict``                     ``label_conflict``
==================  =====================================  ==========================================

A verdict is a tag, so it is queryable and survives the next analysis: ``review:<kind>:accepted``
(the problem is real: fix or drop the sample) or ``review:<kind>:ignored`` (a false alarm). Giving one
removes the other. Open items are the flagged samples with neither.

>>> review_query("leaks")
{'issues': 'leak'}
>>> verdict_tag("leaks", "ignore")
'review:leaks:ignored'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ViscurateError

__all__ = ["ReviewKind", "REVIEW_KINDS", "review_query", "verdict_tag", "Decision"]

Decision = Literal["accept", "ignore", "reopen"]
_VERDICT_WORD = {"accept": "accepted", "ignore": "ignored"}


@dataclass(frozen=True)
class ReviewKind:
    """One review queue: the issues that put a sample in it and how the queue is ordered."""

    name: str
    issues: tuple[str, ...]
    evidence: str
    sort: tuple[tuple[str, int], ...] = ()


REVIEW_KINDS: dict[str, ReviewKind] = {k.name: k for k in (
    ReviewKind("duplicates", ("duplicate", "near_duplicate"), "duplicates", (("duplicates.group", 1),)),
    ReviewKind("leaks", ("leak",), "leak", (("leak.with", 1),)),
    ReviewKind("outliers", ("outlier",), "scores", (("scores.outlier", -1),)),
    ReviewKind("label_errors", ("mislabeled",), "mislabel", (("mislabel.score", -1),)),
    ReviewKind("box_label_errors", ("mislabeled_box",), "ground_truth.detections"),
    ReviewKind("label_conflicts", ("label_conflict",), "label_conflict"),
)}


def _kind(kind: str) -> ReviewKind:
    try:
        return REVIEW_KINDS[kind]
    except KeyError:
        raise ViscurateError(f"unknown review kind {kind!r}: use one of {', '.join(REVIEW_KINDS)}") from None


def verdict_tag(kind: str, decision: str) -> str:
    _kind(kind)
    if decision not in _VERDICT_WORD:
        raise ViscurateError(f"a verdict is 'accept' or 'ignore', got {decision!r}")
    return f"review:{kind}:{_VERDICT_WORD[decision]}"


def review_query(kind: str, state: Literal["open", "decided", "all"] = "all") -> dict:
    """The query of a queue's samples: every flagged one, or only the ``open`` or ``decided`` ones."""
    k = _kind(kind)
    flagged: dict = {"issues": k.issues[0]} if len(k.issues) == 1 else {"issues": {"$in": list(k.issues)}}
    verdicts = [f"review:{kind}:{w}" for w in _VERDICT_WORD.values()]
    if state == "open":
        return {**flagged, "tags": {"$nin": verdicts}}
    if state == "decided":
        return {**flagged, "tags": {"$in": verdicts}}
    if state != "all":
        raise ViscurateError(f"state is 'open', 'decided' or 'all', got {state!r}")
    return flagged
