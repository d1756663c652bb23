"""A user's ONNX object detector, run with onnxruntime: YOLO-style (Ultralytics exports) or DETR-style
(Hugging Face exports) outputs, decoded to :class:`~viscurate.models.base.Detection` boxes in image pixels.

YOLO layout (``layout="yolo"``)
    input ``(N, 3, H, W)`` float32 RGB in 0..1, the image letterboxed into ``H x W`` (aspect kept, scaled
    up or down, centred on grey 114 padding: Ultralytics' ``LetterBox``). The first output is one of

    - ``(N, 4 + C, A)``: YOLOv8/11 (``cx, cy, w, h`` in input pixels, then C class scores), or transposed
      ``(N, A, 4 + C)``;
    - ``(N, A, 5 + C)``: YOLOv5/v7 (``cx, cy, w, h, objectness``, then C class scores; score = obj * cls);
    - ``(N, K, 6)``, end-to-end (YOLOv10/YOLO26 end2end and ``nms=True`` exports): ``x1, y1, x2, y2, score,
      class id`` already after NMS.

    Each anchor keeps its best class; those at or above ``min_confidence`` go through per-class NMS
    (``iou_threshold``, at most ``max_detections`` kept), then the letterbox is undone and boxes are clipped
    to the image.

DETR layout (``layout="detr"``)
    input ``pixel_values (N, 3, H, W)``: the image resized to ``H x W`` (not letterboxed), 0..1, normalised
    with ``mean``/``std`` (ImageNet's by default); a ``pixel_mask`` input, if the graph has one, is all ones.
    Outputs ``logits (N, Q, C + 1)`` (the last class is "no object"; softmax) and ``pred_boxes (N, Q, 4)``
    (``cx, cy, w, h`` relative to the image). Each query's best real class is its label; no NMS.
    ``score="sigmoid"`` reads ``logits (N, Q, C)`` without a no-object class (Deformable/Conditional DETR).

``input_size`` is ``(height, width)``. Left out, it is read from the graph when its input has a fixed size,
else from Ultralytics' ``imgsz`` metadata, else 640 x 640 (YOLO) or 800 x 800 (DETR).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..common.geometry import batched_nms, cxcywh_to_xyxy, nms
from ..common.vectors import softmax
from .base import Detection, ModelSpec
from .litert import resolve_threads
from .onnx_session import OnnxSessionModel, onnx_metadata, onnx_numpy_dtype, onnx_session
from .user_model import (
    ModelLoadError, as_rgb, class_name_list, default_name, file_digest, hf_id2label, literal, resize, size_hw,
    user_spec,
)

__all__ = ["OnnxDetector", "letterbox", "Letterbox", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an image was placed in the model input: ``input = image * scale + (left, top)``."""

    scale: float
    left: int
    top: int

    def to_image(self, xyxy: np.ndarray) -> np.ndarray:
        out = np.asarray(xyxy, dtype=np.float64).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.left) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.top) / self.scale
        return out


def letterbox(image: np.ndarray, height: int, width: int, pad_value: int = PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """Ultralytics' letterbox: scale to fit ``height x width`` keeping the aspect ratio, centre on padding.

    >>> img = np.full((100, 200, 3), 255, np.uint8)
    >>> out, lb = letterbox(img, 64, 64)
    >>> out.shape, lb
    ((64, 64, 3), Letterbox(scale=0.32, left=0, top=16))
    >>> int(out[0, 0, 0]), int(out[32, 32, 0])
    (114, 255)
    """
    h, w = image.shape[:2]
    r = min(height / h, width / w)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    dw, dh = (width - new_w) / 2, (height - new_h) / 2
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    canvas = np.full((height, width, 3), pad_value, dtype=np.uint8)
    canvas[top:top + new_h, left:left + new_w] = resize(image, new_w, new_h)
    return canvas, Letterbox(scale=r, left=left, top=top)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class OnnxDetector(OnnxSessionModel):
    """A detector from an ONNX file (see the module doc for the layouts).

    ``class_names`` (a list, a ``{id: name}`` mapping or a text file, one name a line) default to what the
    file says: Ultralytics' ``names`` metadata, or ``id2label`` of a Hugging Face ``config.json`` next to it.
    ``name`` defaults to the file's stem (its folder's name for ``model.onnx``), ``version`` to the first 12
    hex digits of its SHA-256. ``threads`` is onnxruntime's ``intra_op_num_threads`` (default:
    ``$VISCURATE_THREADS`` or the cores this process may use).
    """

    def __init__(self, path: str | Path, *, layout: str = "yolo", class_names: Any = None,
                 input_size: int | Sequence[int] | None = None, name: str | None = None,
                 version: str | None = None, threads: int | None = None, iou_threshold: float = 0.45,
                 max_detections: int = 300, class_agnostic: bool = False, objectness: bool | None = None,
                 end2end: bool | None = None, score: str = "softmax", mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, batch_size: int = 8,
                 providers: Sequence[str] | None = None) -> None:
        layout = str(layout).lower()
        if layout not in ("yolo", "detr"):
            raise ModelLoadError(f"layout must be 'yolo' or 'detr', not {layout!r}")
        if score not in ("softmax", "sigmoid"):
            raise ModelLoadError(f"score must be 'softmax' or 'sigmoid', not {score!r}")
        self.path = Path(path).expanduser()
        self.layout = layout
        self.threads = resolve_threads(threads)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.class_agnostic = bool(class_agnostic)
        self.objectness = objectness
        self.score = score
        self.batch_size = max(1, int(batch_size))
        self._session = onnx_session(self.path, self.threads, providers)
        meta = onnx_metadata(self._session)
        args = literal(meta.get("args", ""))
        said_end2end = (str(meta.get("end2end", "")).lower() == "true"
                        or (isinstance(args, dict) and args.get("nms") is True))
        self.end2end = end2end if end2end is not None else said_end2end

        if layout == "detr":
            self.mean = np.asarray(mean if mean is not None else IMAGENET_MEAN, dtype=np.float32)
            self.std = np.asarray(std if std is not None else IMAGENET_STD, dtype=np.float32)
        else:
            self.mean = np.asarray(mean if mean is not None else (0.0, 0.0, 0.0), dtype=np.float32)
            self.std = np.asarray(std if std is not None else (1.0, 1.0, 1.0), dtype=np.float32)
        if self.mean.shape != (3,) or self.std.shape != (3,) or np.any(self.std == 0):
            raise ModelLoadError("mean and std must be three numbers (R, G, B), std non-zero")

        self._setup_inputs(layout, meta, size_hw(input_size))
        self._setup_outputs(layout)

        names = class_name_list(class_names)
        if names is None and "names" in meta:
            names = class_name_list(literal(meta["names"]))
        if names is None and layout == "detr":
            names = hf_id2label(self.path)
        self.class_names = names if names is not None else self._infer_class_count()
        if layout == "yolo" and end2end is None and not self.end2end:
            # an (N, K, 6) output that cannot be raw anchors for these classes is a post-NMS export
            shape = self._session.get_outputs()[0].shape
            c = len(self.class_names)
            self.end2end = shape[-1] == 6 and not {shape[1], shape[2]} & {4 + c, 5 + c}

        self.spec: ModelSpec = user_spec(
            name=name or default_name(self.path), version=str(version) if version else file_digest(self.path),
            role="detector", runtime="onnxruntime", source=self.path,
            description=(f"{layout.upper()}-layout ONNX detector, {len(self.class_names)} classes, "
                         f"input {self.input_hw[0]}x{self.input_hw[1]}"))

    # -- graph inspection ------------------------------------------------------------------------------

    def _setup_inputs(self, layout: str, meta: dict[str, str], requested: tuple[int, int] | None) -> None:
        inputs = self._session.get_inputs()
        images = [i for i in inputs if len(i.shape) == 4]
        if layout == "detr":
            images = [i for i in images if i.name == "pixel_values"] or images
        if not images:
            raise ModelLoadError(f"{self.path} has no 4-D image input (inputs: "
                                 f"{[(i.name, i.shape) for i in inputs]})")
        inp = images[0]
        self._input = inp
        self._input_dtype = onnx_numpy_dtype(inp.type)
        shape = list(inp.shape)
        self.channels_last = not (shape[1] == 3) and shape[3] == 3
        hw_dims = shape[1:3] if self.channels_last else shape[2:4]
        fixed = tuple(int(d) for d in hw_dims) if all(isinstance(d, int) and d > 0 for d in hw_dims) else None
        if fixed and requested and tuple(requested) != fixed:
            raise ModelLoadError(f"{self.path} takes {fixed[0]}x{fixed[1]} (height x width) images; "
                                 f"input_size={requested} does not fit")
        imgsz = literal(meta.get("imgsz", ""))
        ok = isinstance(imgsz, int) or (isinstance(imgsz, (list, tuple)) and len(imgsz) == 2)
        meta_size = size_hw(imgsz) if ok else None
        default = (640, 640) if layout == "yolo" else (800, 800)
        self.input_hw: tuple[int, int] = fixed or requested or meta_size or default
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self._extra_inputs = []
        for i in inputs:
            if i is inp:
                continue
            if "mask" in i.name.lower():
                self._extra_inputs.append(i)
            else:
                raise ModelLoadError(f"{self.path} needs an input viscurate cannot provide: {i.name} {i.shape}")

    def _setup_outputs(self, layout: str) -> None:
        outputs = self._session.get_outputs()
        if layout == "yolo":
            self._outputs = [outputs[0].name]
            if len(outputs[0].shape) != 3:
                raise ModelLoadError(f"a YOLO-layout model's first output must be 3-D, {outputs[0].name} is "
                                     f"{outputs[0].shape}")
            return
        by_name = {o.name: o for o in outputs}
        logits = by_name.get("logits")
        boxes = by_name.get("pred_boxes")
        if logits is None or boxes is None:
            three_d = [o for o in outputs if len(o.shape) == 3]
            box_like = [o for o in three_d if o.shape[-1] == 4]
            other = [o for o in three_d if o not in box_like]
            if boxes is None and box_like:
                boxes = box_like[0]
            if logits is None and other:
                logits = other[0]
        if logits is None or boxes is None:
            raise ModelLoadError(f"a DETR-layout model needs 'logits' and 'pred_boxes' outputs; {self.path} has "
                                 f"{[(o.name, o.shape) for o in outputs]}")
        self._outputs = [logits.name, boxes.name]

    def _infer_class_count(self) -> list[str]:
        """Generic names ``class_<i>`` when the file names no classes, counted from the output shape."""
        out = next(o for o in self._session.get_outputs() if o.name == self._outputs[0])
        shape = list(out.shape)
        if not all(isinstance(d, int) for d in shape[1:]):
            probe = self._run(np.zeros((1, *self.input_hw, 3), dtype=np.uint8)[:1])
            shape = list(probe[0].shape)
        a, b = shape[1], shape[2]
        if self.layout == "detr":
            n = b if self.score == "sigmoid" else b - 1
        elif self.end2end:
            raise ModelLoadError(f"{self.path}: an end-to-end YOLO export does not say how many classes it has; "
                                 f"pass class_names")
        elif a < b:
            n = a - 5 if self.objectness else a - 4
        elif self.objectness is None:
            raise ModelLoadError(f"{self.path}: output {shape} may be YOLOv5 (with objectness) or a transposed "
                                 f"YOLOv8 output; pass class_names (or objectness=True/False)")
        else:
            n = b - 5 if self.objectness else b - 4
        if n <= 0:
            raise ModelLoadError(f"{self.path}: output shape {shape} does not fit the {self.layout} layout")
        return [f"class_{i}" for i in range(n)]

    # -- inference -----------------------------------------------------------------------------------

    def _run(self, batch_hwc: np.ndarray) -> list[np.ndarray]:
        """Run the graph on ``(n, H, W, 3)`` uint8 (already letterboxed/resized), honouring a fixed batch."""
        if self._input_dtype == np.uint8:  # a graph that takes raw pixels does its own scaling
            x = batch_hwc
        else:
            x = (batch_hwc.astype(np.float32) / 255.0 - self.mean) / self.std
        if not self.channels_last:
            x = x.transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x, dtype=self._input_dtype)
        n = len(x)
        fixed = self._fixed_batch
        step = fixed or self.batch_size
        chunks: list[list[np.ndarray]] = []
        for start in range(0, n, step):
            part = x[start:start + step]
            real = len(part)
            if fixed and real < fixed:
                part = np.concatenate([part, np.zeros((fixed - real, *part.shape[1:]), part.dtype)])
            feed = {self._input.name: part}
            for extra in self._extra_inputs:
                mshape = (len(part), *self.input_hw)
                feed[extra.name] = np.ones(mshape, dtype=onnx_numpy_dtype(extra.type))
            outs = self._session.run(self._outputs, feed)
            chunks.append([np.asarray(o)[:real] for o in outs])
        return [np.concatenate([c[k] for c in chunks]) for k in range(len(self._outputs))]

    def detect(self, images: Sequence[np.ndarray], min_confidence: float = 0.3) -> list[list[Detection]]:
        """Detections for each image (boxes ``[x, y, w, h]`` in that image's pixels), best first."""
        self.ensure_open()
        images = [as_rgb(im) for im in images]
        if not images:
            return []
        h_in, w_in = self.input_hw
        if self.layout == "yolo":
            prepared = [letterbox(im, h_in, w_in) for im in images]
            outs = self._run(np.stack([p[0] for p in prepared]))
            return [self._decode_yolo(outs[0][i], prepared[i][1], images[i].shape, min_confidence)
                    for i in range(len(images))]
        batch = np.stack([resize(im, w_in, h_in) for im in images])
        logits, boxes = self._run(batch)
        return [self._decode_detr(logits[i], boxes[i], images[i].shape, min_confidence) for i in range(len(images))]

    def _rows(self, out: np.ndarray) -> tuple[np.ndarray, bool]:
        """``(A, K)`` rows of one image's YOLO output and whether column 4 is objectness."""
        c = len(self.class_names)
        a, b = out.shape
        fits = (4 + c, 5 + c) if self.objectness is None else ((5 + c,) if self.objectness else (4 + c,))
        if a in fits and (b not in fits or a == 4 + c):
            rows = out.T  # channels first: (4 + C, A), the Ultralytics v8/v11 export
        elif b in fits:
            rows = out
        else:
            raise ModelLoadError(f"{self.path}: YOLO output of shape {out.shape} per image does not fit "
                                 f"{c} classes ((4 + C, A), (A, 4 + C) or (A, 5 + C))")
        return rows, rows.shape[1] == 5 + c

    def _decode_yolo(self, out: np.ndarray, lb: Letterbox, image_shape: tuple[int, ...],
                     min_confidence: float) -> list[Detection]:
        out = np.asarray(out, dtype=np.float64)
        if self.end2end:
            if out.shape[-1] != 6 and out.shape[0] == 6:
                out = out.T
            xyxy, conf, cls = out[:, :4], out[:, 4], out[:, 5].astype(np.int64)
            keep = conf >= min_confidence
            xyxy, conf, cls = xyxy[keep], conf[keep], cls[keep]
            order = np.argsort(-conf, kind="stable")[: self.max_detections]
        else:
            rows, has_obj = self._rows(out)
            cls_scores = rows[:, 5:] * rows[:, 4:5] if has_obj else rows[:, 4:]
            cls = np.argmax(cls_scores, axis=1)
            conf = cls_scores[np.arange(len(rows)), cls]
            keep = conf >= min_confidence
            boxes, conf, cls = rows[keep, :4], conf[keep], cls[keep]
            if len(conf) > 30000:  # bound the NMS work, as Ultralytics does
                top = np.argsort(-conf, kind="stable")[:30000]
                boxes, conf, cls = boxes[top], conf[top], cls[top]
            xyxy = cxcywh_to_xyxy(boxes)
            if self.class_agnostic:
                order = nms(xyxy, conf, self.iou_threshold)
            else:
                order = batched_nms(xyxy, conf, cls, self.iou_threshold)
            order = order[: self.max_detections]
        return self._detections(lb.to_image(xyxy[order]), conf[order], cls[order], image_shape)

    def _decode_detr(self, logits: np.ndarray, boxes: np.ndarray, image_shape: tuple[int, ...],
                     min_confidence: float) -> list[Detection]:
        logits = np.asarray(logits, dtype=np.float64)
        if self.score == "sigmoid":
            probs = _sigmoid(logits)
            expected = logits.shape[-1]
        else:
            probs = softmax(logits)[:, :-1]  # the last class is "no object"
            expected = logits.shape[-1] - 1
        if expected != len(self.class_names):
            raise ModelLoadError(f"{self.path}: logits have {logits.shape[-1]} columns, which does not fit "
                                 f"{len(self.class_names)} class names with score={self.score!r}")
        cls = np.argmax(probs, axis=1)
        conf = probs[np.arange(len(probs)), cls]
        keep = np.flatnonzero(conf >= min_confidence)
        keep = keep[np.argsort(-conf[keep], kind="stable")][: self.max_detections]
        h, w = image_shape[:2]
        b = np.asarray(boxes, dtype=np.float64)[keep]
        xyxy = cxcywh_to_xyxy(b) * np.array([w, h, w, h])
        return self._detections(xyxy, conf[keep], cls[keep], image_shape)

    def _detections(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray,
                    image_shape: tuple[int, ...]) -> list[Detection]:
        h, w = image_shape[:2]
        result = []
        for (x1, y1, x2, y2), c, k in zip(xyxy.reshape(-1, 4), conf, cls):
            x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
            y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
            if x2 - x1 <= 0 or y2 - y1 <= 0:
                continue
            k = int(k)
            label = self.class_names[k] if 0 <= k < len(self.class_names) else f"class_{k}"
            result.append(Detection(name=label, confidence=float(c),
                                    bbox=[float(x1), float(y1), float(x2 - x1), float(y2 - y1)], class_id=k))
        return result

    def __repr__(self) -> str:
        return f"OnnxDetector({self.spec.key!r}, layout={self.layout!r}, classes={len(self.class_names)})"
