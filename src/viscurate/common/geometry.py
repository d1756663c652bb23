"""Box geometry shared by the detectors and the evaluation: areas, IoU (one box against many, and the
pairwise matrix), greedy non-maximum suppression (plain and per class) and box conversions.

Corner boxes are ``[x1, y1, x2, y2]``; ``xywh`` boxes are ``[x, y, width, height]`` (COCO's and the
catalog's); ``cxcywh`` boxes are ``[center x, center y, width, height]`` (what detectors regress).
IoU and conversions keep their inputs' float dtype, so a float32 detector stays float32 to the last bit;
``nms`` and ``batched_nms`` compare in float64 and return indices.

>>> b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], float)
>>> iou_one_to_many(b[0], b).round(3).tolist()
[1.0, 0.818, 0.0]
>>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5).tolist()
[0, 2]
"""
from __future__ import annotations

import numpy as np

__all__ = ["box_area", "iou_one_to_many", "iou_matrix_xywh", "greedy_nms", "nms", "batched_nms",
           "cxcywh_to_xyxy"]


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Area of corner boxes ``[..., 4]``; an inverted extent counts as zero.

    >>> box_area(np.array([[0, 0, 2, 3], [5, 5, 4, 9]], float)).tolist()
    [6.0, 0.0]
    """
    return np.maximum(boxes[..., 2] - boxes[..., 0], 0) * np.maximum(boxes[..., 3] - boxes[..., 1], 0)


def _iou_with_areas(box: np.ndarray, area: np.ndarray, boxes: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """IoU of one corner box with many, their areas given (NMS computes them once for all its rounds)."""
    iw = np.maximum(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0)
    ih = np.maximum(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0)
    inter = iw * ih
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one corner box with each of ``boxes`` ``(n, 4)``; 0 where the union is empty.

    >>> iou_one_to_many(np.array([0., 0, 2, 2]), np.array([[1., 0, 3, 2], [0, 0, 0, 0]])).round(3).tolist()
    [0.333, 0.0]
    """
    return _iou_with_areas(box, box_area(box), boxes, box_area(boxes))


def iou_matrix_xywh(a: np.ndarray, b: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """Pairwise IoU of ``[x, y, w, h]`` boxes, ``(len(a), len(b))``; 0 where the union is empty. Areas are
    ``w * h`` as given (callers clamp negative sizes first). ``crowd`` (one flag per box of ``b``): against
    a crowd region the IoU is the fraction of the ``a`` box inside it (COCO's rule).

    >>> iou_matrix_xywh(np.array([[0., 0, 10, 10]]), np.array([[5., 0, 10, 10], [0, 0, 20, 20]])).round(3)
    array([[0.333, 0.25 ]])
    >>> iou_matrix_xywh(np.array([[0., 0, 10, 10]]), np.array([[0., 0, 20, 20]]), np.array([True]))
    array([[1.]])
    """
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = (np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
             * np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None))
    a_area = a[:, 2:3] * a[:, 3:4]
    union = a_area + b[:, 2] * b[:, 3] - inter
    if crowd is not None:
        union = np.where(crowd[None, :], a_area, union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def greedy_nms(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression of corner ``boxes`` already sorted best first: the positions kept, in
    order. A box is suppressed when its IoU with a kept box is above ``iou_threshold``.

    >>> greedy_nms(np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32), 0.5).tolist()
    [0, 2]
    """
    areas = box_area(boxes)
    keep: list[int] = []
    order = np.arange(len(boxes))
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[_iou_with_areas(boxes[i], areas[i], boxes[rest], areas[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression over ``(n, 4)`` corner boxes (in float64); indices kept, best first
    (equal scores keep their input order).

    >>> b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], float)
    >>> nms(b, np.array([0.7, 0.8, 0.9]), 0.5).tolist()
    [2, 1]
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    return order[greedy_nms(boxes[order], iou_threshold)]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Per-class NMS: boxes of different classes never suppress each other. Indices kept, best first.

    >>> b = np.array([[0, 0, 10, 10], [1, 0, 11, 10]], float)
    >>> batched_nms(b, np.array([0.9, 0.8]), np.array([0, 1]), 0.5).tolist()
    [0, 1]
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    # shift each class into its own region of the plane (the usual offset trick)
    span = float(np.max(np.abs(boxes))) * 2 + 1
    shifted = boxes + (np.asarray(classes, dtype=np.float64) * span)[:, None]
    return nms(shifted, scores, iou_threshold)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Corner boxes ``(n, 4)`` of ``[center x, center y, width, height]`` boxes.

    >>> cxcywh_to_xyxy(np.array([[5., 5, 4, 2]])).tolist()
    [[3.0, 4.0, 7.0, 6.0]]
    """
    cx, cy, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return np.column_stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
