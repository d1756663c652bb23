"""Faces only where a person is: which of the face detector's faces the label stage keeps.

BlazeFace scores 0.5-0.7 on a monkey, a spoonbill, a cat, towers, a windmill and a balloon; a face written
on a photo without people is a finding nobody can trust. A face is kept when the image shows a person
around it:

- the center of the face lies in a person box of the detector (confidence >= :data:`PERSON_EVIDENCE`, lower
  than the 0.3 the stage writes: a weak person box is evidence enough) that is larger than the face; or
- the face fills the image (its longer side is >= :data:`CLOSE_UP` of the image's): a face crop, where no
  body is in view for the detector to find;
- with no detector output to judge by (``people`` is ``None``: the run has no detector and none was stored),
  a face must score >= :data:`ALONE_MIN_CONFIDENCE` instead.

The constants were chosen on one half of 722 photos (every GCompris picture, the corpus's faces, the
hand-labeled photos; split by photo) and measured on the other: no face is left on a photo without
people, 23 of 24 real faces stay (``bench/faces_on_people.py``; docs/label-quality.md, "Faces only on
people").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ...models.base import Detection, Face

__all__ = ["PERSON_EVIDENCE", "CLOSE_UP", "ALONE_MIN_CONFIDENCE", "on_people", "person_boxes"]

#: Person boxes down to this confidence hold faces (the detector runs this low for them).
PERSON_EVIDENCE = 0.15
#: A face whose longer side is at least this share of the image's is a face crop: kept without a body.
CLOSE_UP = 0.7
#: Without any detector output, a face is kept from this confidence on.
ALONE_MIN_CONFIDENCE = 0.65


def person_boxes(dets: Sequence[Detection], min_confidence: float = PERSON_EVIDENCE) -> list[Detection]:
    """The person boxes of ``dets`` that count as evidence for faces.

    >>> [d.confidence for d in person_boxes([Detection("person", 0.2, [0, 0, 5, 5]),
    ...                                      Detection("person", 0.1, [0, 0, 5, 5]), Detection("dog", 0.9, [0, 0, 5, 5])])]
    [0.2]
    """
    return [d for d in dets if d.name == "person" and d.confidence >= min_confidence]


def on_people(faces: Sequence[Face], people: Sequence[Detection] | None, image_size: tuple[int, int], *,
              person_evidence: float = PERSON_EVIDENCE, close_up: float = CLOSE_UP,
              alone_min_confidence: float = ALONE_MIN_CONFIDENCE) -> list[Face]:
    """The faces of ``faces`` that a person is seen around, in their order. ``people``: the detector's boxes
    (any class, filtered here) in the faces' pixels, or ``None`` when no detector output is known;
    ``image_size``: (width, height) of those pixels.

    >>> face = Face(0.6, [40, 10, 20, 20])
    >>> len(on_people([face], [Detection("person", 0.4, [30, 0, 40, 100])], (200, 100)))  # in a person box
    1
    >>> len(on_people([face], [Detection("bird", 0.9, [30, 0, 40, 100])], (200, 100)))    # no person around it
    0
    >>> len(on_people([face], [], (25, 25)))   # the face fills the image: a face crop
    1
    >>> len(on_people([face], None, (200, 100))), len(on_people([Face(0.8, [40, 10, 20, 20])], None, (200, 100)))
    (0, 1)
    """
    if not faces:
        return []
    boxes = _xywh([f.bbox for f in faces])
    keep = _close_ups(boxes, image_size, close_up)
    if people is None:
        keep |= np.array([float(f.confidence) >= alone_min_confidence for f in faces])
    else:
        keep |= _in_person_boxes(boxes, _xywh([d.bbox for d in person_boxes(people, person_evidence)]))
    return [f for f, k in zip(faces, keep) if k]


def _xywh(boxes: Sequence[Sequence[float]]) -> np.ndarray:
    return np.asarray([[float(v) for v in b[:4]] for b in boxes], np.float64).reshape(-1, 4)


def _close_ups(faces: np.ndarray, image_size: tuple[int, int], share: float) -> np.ndarray:
    """Per face: does its longer side cover ``share`` of the image's side it runs along?"""
    width, height = (max(float(v), 1.0) for v in image_size)
    return np.maximum(faces[:, 2] / width, faces[:, 3] / height) >= share


def _in_person_boxes(faces: np.ndarray, people: np.ndarray) -> np.ndarray:
    """Per face: does its center lie in a person box larger than the face (the LQE's ``face_agree``
    reads a face in a person box the same way)?"""
    if not len(people):
        return np.zeros(len(faces), bool)
    cx, cy = (faces[:, 0] + faces[:, 2] / 2)[:, None], (faces[:, 1] + faces[:, 3] / 2)[:, None]
    x, y, w, h = (people[:, i][None, :] for i in range(4))
    inside = (cx >= x) & (cx <= x + w) & (cy >= y) & (cy <= y + h)
    larger = w * h >= (faces[:, 2] * faces[:, 3])[:, None]
    return (inside & larger).any(axis=1)
