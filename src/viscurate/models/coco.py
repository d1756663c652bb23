"""COCO labels: the 90-id category map the TensorFlow detectors output (ids 1..90, ten of them unused)
and the 80 class names in the order of contiguous class indices (YOLO-style detectors use 0..79).

Names are the official COCO ``instances`` category names (``"tv"``, ``"couch"``, ``"dining table"``).
The person keypoint names follow the COCO keypoint order used by MoveNet.

>>> COCO_ID_TO_NAME[1], COCO_ID_TO_NAME[17], COCO_ID_TO_NAME[90]
('person', 'cat', 'toothbrush')
>>> len(COCO_ID_TO_NAME), len(COCO_CLASSES), 12 in COCO_ID_TO_NAME
(80, 80, False)
>>> COCO_CLASSES[COCO_ID_TO_INDEX[47]]
'cup'
"""
from __future__ import annotations

__all__ = ["COCO_ID_TO_NAME", "COCO_CLASSES", "COCO_ID_TO_INDEX", "COCO_NAME_TO_ID", "COCO_KEYPOINTS",
           "COCO_SKELETON", "coco_name"]

COCO_ID_TO_NAME: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
    24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle",
    46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut",
    61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet",
    72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
    79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
    87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}
"""The 80 COCO categories by their original ids (1..90; 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 unused)."""

COCO_CLASSES: tuple[str, ...] = tuple(COCO_ID_TO_NAME[i] for i in sorted(COCO_ID_TO_NAME))
"""The 80 class names in contiguous order (index 0 = person ... 79 = toothbrush)."""

COCO_ID_TO_INDEX: dict[int, int] = {cid: i for i, cid in enumerate(sorted(COCO_ID_TO_NAME))}
COCO_NAME_TO_ID: dict[str, int] = {name: cid for cid, name in COCO_ID_TO_NAME.items()}

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)
"""The 17 COCO person keypoints, in the order of ``Pose.keypoints`` (left/right of the person)."""

COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16),
)
"""Keypoint index pairs to draw a stick figure."""


def coco_name(class_id: int) -> str:
    """The name of a 1..90 COCO id; ids without a category come back as ``"coco_<id>"``."""
    return COCO_ID_TO_NAME.get(int(class_id), f"coco_{int(class_id)}")
