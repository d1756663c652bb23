"""Vector helpers shared by the embedders and the similarity code."""
from __future__ import annotations

import numpy as np

__all__ = ["l2_normalize", "softmax"]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit L2 length, float32 and C-contiguous (cosine similarity is then a dot product):
    each row of a 2-D array, or the whole of a 1-D vector. Zero vectors stay zero.

    >>> l2_normalize(np.array([[3., 4.], [0., 0.]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    >>> l2_normalize(np.array([0., 2.])).tolist()
    [0.0, 1.0]
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    # a single vector takes numpy's vector norm (a dot product), which rounds unlike the per-row reduction
    norms = np.linalg.norm(x) if x.ndim == 1 else np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax of logits along ``axis``, in float64 (the maximum is subtracted first, so large logits do not
    overflow).

    >>> softmax(np.array([0.0, np.log(3.0)])).round(3).tolist()
    [0.25, 0.75]
    """
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)
