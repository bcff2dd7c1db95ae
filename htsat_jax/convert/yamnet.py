r"""Google's released YAMNet weights -> ``htsat_jax.models.yamnet`` weights.

Two sources, no TensorFlow needed:

* **Keras HDF5** (``yamnet.h5``, the float release; ``save_weights`` layout), read with h5py from
  explicit dataset paths ``<layer>/<layer>/<variable>:0``: ``layer1/conv/...kernel:0``,
  ``layerN/{depthwise_conv,pointwise_conv}[/bn]/...``, the classifier under ``logits/logits/``
  (or Keras' automatic ``dense*`` name). Missing, extra (e.g. a BatchNorm ``gamma``) or mis-shaped
  datasets are errors that name them; empty groups are ignored.
* **TFLite** (the TF-Hub / MediaPipe / ``TFLiteConverter`` releases), parsed with the small
  flatbuffer reader below (no package needed). The 27 convolutions are taken in graph order
  (``CONV_2D`` layer1, then ``DEPTHWISE_CONV_2D`` / ``CONV_2D`` per block), the classifier is the
  ``FULLY_CONNECTED`` with a ``(classes, 1024)`` weight; weights reached through ``DEQUANTIZE`` ops
  are followed. int8 / uint8 weights are dequantized as ``scale[c] * (q - zero_point[c])`` along
  their quantized axis (per channel or per tensor), float16 is widened. BatchNorm is folded into
  each convolution's float32 bias in these files: the bias becomes BatchNorm ``beta`` with
  ``mean = 0`` and ``var = 1 - 1e-4`` (so ``1 / sqrt(var + eps)`` is exactly 1 in float32).
  The file's frontend constants are checked against ours where present: the Hann window, the mel
  matrix (within int8 rounding) and the log offset.

Class names: YAMNet's 521 classes are AudioSet's 527 (the shipped
``htsat_jax/resources/audioset_class_labels_indices.csv``) without six (:data:`DROPPED_MIDS`); a
``.tflite`` that carries a label file (MediaPipe's appended zip) is checked against them and its
names are used.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import struct
import zipfile
from typing import Any, Callable

import numpy as np

from htsat_jax.convert.common import CheckpointError, ConversionReport

# The six AudioSet classes YAMNet was not trained on (yamnet_class_map.csv = the 527 without them).
DROPPED_MIDS = {
    "/m/05zppz": "Male speech, man speaking",
    "/m/02zsn": "Female speech, woman speaking",
    "/t/dd00003": "Male singing",
    "/t/dd00004": "Female singing",
    "/m/04gy_2": "Battle cry",
    "/t/dd00032": "Funny music",
}
NUM_CLASSES = 521
EMBEDDING = 1024


@dataclasses.dataclass
class YamnetReport(ConversionReport):
    """A :class:`ConversionReport` with the class names found and free-form notes."""

    class_names: list[str] | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        out = super().summary()
        if self.class_names is not None:
            out += f"\nclass names: {len(self.class_names)} ({self.class_names[0]} ... {self.class_names[-1]})"
        return out + "".join(f"\nnote: {n}" for n in self.notes)


def yamnet_classes() -> list[tuple[str, str]]:
    """The 521 ``(mid, display_name)`` of YAMNet, derived from the shipped 527-class AudioSet list."""
    from importlib import resources

    text = (resources.files("htsat_jax") / "resources" / "audioset_class_labels_indices.csv").read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    kept = [(r["mid"], r["display_name"]) for r in rows if r["mid"] not in DROPPED_MIDS]
    missing = set(DROPPED_MIDS) - {r["mid"] for r in rows}
    if len(rows) != 527 or missing or len(kept) != NUM_CLASSES:
        raise RuntimeError(f"the shipped AudioSet list has {len(rows)} rows (missing {sorted(missing)}); "
                           f"expected 527 giving {NUM_CLASSES}")
    return kept


def yamnet_class_names() -> list[str]:
    """YAMNet's 521 display names in output order (Silence 494, Sine wave 495, White noise 514)."""
    return [name for _, name in yamnet_classes()]


def _default_names(num_classes: int) -> list[str] | None:
    return yamnet_class_names() if num_classes == NUM_CLASSES else None


def _config(num_classes: int, width_divisor: int, loss_type: str | None):
    from htsat_jax.models import yamnet

    return yamnet.Config(num_classes=num_classes, width_divisor=width_divisor, loss_type=loss_type or "clip_bce")


def _layers(width_divisor: int) -> list[tuple[int, int, int]]:
    """``(stride, in channels, out channels)`` of the 14 layers."""
    from htsat_jax.models import yamnet

    out, cin = [], 1
    for stride, c in yamnet.LAYERS:
        out.append((stride, cin, c // width_divisor))
        cin = c // width_divisor
    return out


def _set(tree: dict, key: tuple[str, ...], value: np.ndarray) -> None:
    for k in key[:-1]:
        tree = tree.setdefault(k, {})
    tree[key[-1]] = value


# ============================================================================ Keras HDF5


def _h5_entries(width_divisor: int) -> list[tuple[str, tuple[str, ...], tuple[int, ...], Callable]]:
    """``(h5 dataset path, our key, h5 shape, h5 -> ours)`` of the backbone, in Keras load order."""
    same = lambda a: a  # noqa: E731
    depthwise = lambda a: a.transpose(0, 1, 3, 2)  # noqa: E731 - (3, 3, C, 1) -> (3, 3, 1, C)
    entries = []

    def bn(layer: str, ours: tuple[str, ...], c: int):
        for var, name in (("beta", "bias"), ("moving_mean", "mean"), ("moving_variance", "var")):
            entries.append((f"{layer}/bn/{layer}/bn/{var}:0", ours + (name,), (c,), same))

    for i, (stride, cin, cout) in enumerate(_layers(width_divisor), start=1):
        if i == 1:
            entries.append(("layer1/conv/layer1/conv/kernel:0", ("backbone", "layer1", "conv", "kernel"),
                            (3, 3, cin, cout), same))
            bn("layer1/conv", ("backbone", "layer1", "bn"), cout)
            continue
        dw, pw = f"layer{i}/depthwise_conv", f"layer{i}/pointwise_conv"
        entries.append((f"{dw}/{dw}/depthwise_kernel:0", ("backbone", f"layer{i}", "depthwise_conv", "kernel"),
                        (3, 3, cin, 1), depthwise))
        bn(dw, ("backbone", f"layer{i}", "depthwise_bn"), cin)
        entries.append((f"{pw}/{pw}/kernel:0", ("backbone", f"layer{i}", "pointwise_conv", "kernel"),
                        (1, 1, cin, cout), same))
        bn(pw, ("backbone", f"layer{i}", "pointwise_bn"), cout)
    return entries


def _h5_datasets(group) -> dict[str, Any]:
    import h5py

    found = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found[name] = obj
    group.visititems(visit)
    return found


def _h5_root(f):
    """The weights group: the file itself (``save_weights``) or ``model_weights`` (``model.save``)."""
    return f["model_weights"] if "model_weights" in f and "layer1" not in f else f


def looks_like_yamnet_h5(path: str) -> bool:
    """An HDF5 file holding YAMNet's first layer under its official name."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = _h5_root(f)
            return "layer1/conv/layer1/conv/kernel:0" in root and "layer14" in root
    except OSError:
        return False


def read_h5(path: str, *, loss_type: str | None = None, require_head: bool = True):
    """A YAMNet Keras HDF5 weights file -> ``(config, weights, report)``.

    Raises:
      CheckpointError: missing, extra or mis-shaped datasets (each named with its shape and the
        expected one), a non-float dataset, no classifier when ``require_head``.
    """
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"could not open {path} as HDF5: {e}") from e
    with f:
        root = _h5_root(f)
        datasets = _h5_datasets(root)
        report = YamnetReport(source=path, container=f"Keras HDF5 weights (keras_version="
                              f"{_attr(f, 'keras_version')}, backend={_attr(f, 'backend')})")
        first = datasets.get("layer1/conv/layer1/conv/kernel:0")
        divisor = 1
        if first is not None and first.ndim == 4 and first.shape[-1] and 32 % first.shape[-1] == 0:
            divisor = 32 // first.shape[-1]
        entries = _h5_entries(divisor)
        # The classifier: "logits" in the released file, Keras' automatic "dense", "dense_1"... otherwise.
        backbone_paths = {p for p, *_ in entries}
        heads = sorted({p.split("/")[0] for p in datasets
                        if p not in backbone_paths and not p.startswith("layer") and p.endswith("/kernel:0")})
        errors, missing, shapes, weights = [], [], [], {}
        for h5_path, key, shape, fn in entries:
            if h5_path not in datasets:
                missing.append(f"{h5_path} {shape}")
                continue
            ds = datasets[h5_path]
            if tuple(ds.shape) != shape:
                shapes.append(f"{h5_path} has shape {tuple(ds.shape)}, YAMNet expects {shape}")
                continue
            _set(weights, key, fn(_read_float(ds, h5_path, path)))
            report.converted.append(f"{'/'.join(key)} <- {h5_path}")
        used = set(backbone_paths)
        num_classes = None
        if len(heads) > 1:
            errors.append(f"several classifier groups {heads}; expected one (logits)")
        elif heads:
            head = heads[0]
            kpath, bpath = f"{head}/{head}/kernel:0", f"{head}/{head}/bias:0"
            kernel, bias = datasets.get(kpath), datasets.get(bpath)
            emb = EMBEDDING // divisor
            if kernel is None or bias is None:
                missing += [p for p, d in ((kpath, kernel), (bpath, bias)) if d is None]
            elif kernel.ndim != 2 or kernel.shape[0] != emb or tuple(bias.shape) != (kernel.shape[1],):
                shapes.append(f"{kpath} / {bpath} have shapes {tuple(kernel.shape)} / {tuple(bias.shape)}, YAMNet "
                              f"expects ({emb}, classes) / (classes,)")
            else:
                num_classes = int(kernel.shape[1])
                _set(weights, ("logits", "kernel"), _read_float(kernel, kpath, path))
                _set(weights, ("logits", "bias"), _read_float(bias, bpath, path))
                report.converted += [f"logits/kernel <- {kpath}", f"logits/bias <- {bpath}"]
                if head != "logits":
                    report.notes.append(f"classifier read from Keras' automatic layer name {head!r}")
            used |= {kpath, bpath}
        elif require_head:
            missing.append("logits/logits/kernel:0 (1024, classes) and logits/logits/bias:0 (the classifier)")
        extra = sorted(p for p in datasets if p not in used)
        if extra:
            errors.append("unexpected datasets (YAMNet's BatchNorm has no gamma; conv layers have no bias): "
                          + ", ".join(f"{p} {tuple(datasets[p].shape)}" for p in extra[:12])
                          + (f" and {len(extra) - 12} more" if len(extra) > 12 else ""))
        if missing:
            errors.insert(0, "missing datasets: " + ", ".join(missing[:12])
                          + (f" and {len(missing) - 12} more" if len(missing) > 12 else ""))
        errors.extend(shapes)
        if errors:
            raise CheckpointError(f"{path} is not a YAMNet weights file as expected: " + "; ".join(errors))
    if num_classes is None:
        report.notes.append("no classifier in the file: backbone only")
    config = _config(num_classes or NUM_CLASSES, divisor, loss_type)
    report.class_names = _default_names(config.num_classes) if num_classes else None
    report.inferred = {"num_classes": num_classes, "width_divisor": divisor, "loss_type": config.loss_type,
                       "datasets": len(datasets)}
    return config, weights, report


def _attr(f, name: str) -> str:
    value = f.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_float(ds, name: str, path: str) -> np.ndarray:
    value = np.asarray(ds[()])
    if not np.issubdtype(value.dtype, np.floating):
        raise CheckpointError(f"{path}: dataset {name} has dtype {value.dtype}, expected float32")
    return value.astype(np.float32)


# ============================================================================ TFLite flatbuffers
# Only the tables of the TFLite schema (tensorflow/lite/schema/schema.fbs) this converter reads.

_TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
                 7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
                 15: "uint32", 16: "uint16", 17: "int4"}
_OPS = {0: "ADD", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC",
        18: "MUL", 22: "RESHAPE", 34: "PAD", 36: "GATHER", 40: "MEAN", 73: "LOG", 131: "RFFT2D", 135: "COMPLEX_ABS"}
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


class _Table:
    """A flatbuffer table at ``pos`` of ``buf``."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_size = struct.unpack_from("<H", buf, self.vtable)[0]

    def _offset(self, field: int) -> int:
        at = 4 + 2 * field
        return struct.unpack_from("<H", self.buf, self.vtable + at)[0] if at < self.vtable_size else 0

    def scalar(self, field: int, fmt: str, default=0):
        off = self._offset(field)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0] if off else default

    def _target(self, field: int) -> int | None:
        off = self._offset(field)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, field: int) -> "_Table | None":
        at = self._target(field)
        return None if at is None else _Table(self.buf, at)

    def string(self, field: int) -> str | None:
        at = self._target(field)
        if at is None:
            return None
        n = struct.unpack_from("<I", self.buf, at)[0]
        return bytes(self.buf[at + 4:at + 4 + n]).decode("utf-8", "replace")

    def vector(self, field: int, dtype: str) -> np.ndarray:
        at = self._target(field)
        if at is None:
            return np.zeros(0, dtype)
        n = struct.unpack_from("<I", self.buf, at)[0]
        return np.frombuffer(self.buf, np.dtype(dtype).newbyteorder("<"), n, at + 4)

    def tables(self, field: int) -> list["_Table"]:
        at = self._target(field)
        if at is None:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        out = []
        for k in range(n):
            el = at + 4 + 4 * k
            out.append(_Table(self.buf, el + struct.unpack_from("<I", self.buf, el)[0]))
        return out


@dataclasses.dataclass
class TfliteTensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    buffer: int
    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int
    sparse: bool


@dataclasses.dataclass
class TfliteOp:
    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any]


class TfliteModel:
    """The first subgraph of a ``.tflite`` file: tensors, operators and constant buffers."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            self.buf = f.read()
        if len(self.buf) < 8 or self.buf[4:8] != b"TFL3":
            raise CheckpointError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier)")
        try:
            self._parse()
        except (struct.error, IndexError, ValueError) as e:
            raise CheckpointError(f"{path}: corrupt TFLite flatbuffer ({type(e).__name__}: {e})") from e

    def _parse(self) -> None:
        model = _Table(self.buf, struct.unpack_from("<I", self.buf, 0)[0])
        self.version = model.scalar(0, "I")
        self.description = model.string(3) or ""
        codes = []
        for oc in model.tables(1):
            code = max(oc.scalar(0, "b"), oc.scalar(3, "i"))  # deprecated int8 code, or the int32 one
            codes.append(f"CUSTOM_{oc.string(1)}" if code == 32 else _OPS.get(code, f"BUILTIN_{code}"))
        self._buffers = model.tables(4)
        self.metadata = {m.string(0): m.scalar(1, "I") for m in model.tables(6)}
        subgraphs = model.tables(2)
        if not subgraphs:
            raise ValueError("no subgraph")
        graph = subgraphs[0]
        self.tensors = []
        for i, t in enumerate(graph.tables(0)):
            q = t.table(4)
            scale = q.vector(2, "float32").astype(np.float32) if q is not None else np.zeros(0, np.float32)
            zero = q.vector(3, "int64").astype(np.int64) if q is not None else np.zeros(0, np.int64)
            self.tensors.append(TfliteTensor(
                index=i, name=t.string(3) or "", shape=tuple(int(s) for s in t.vector(0, "int32")),
                dtype=_TENSOR_TYPES.get(t.scalar(1, "b"), f"type{t.scalar(1, 'b')}"), buffer=t.scalar(2, "I"),
                scale=scale, zero_point=zero, quantized_dimension=(q.scalar(6, "i") if q is not None else 0),
                sparse=t.table(6) is not None))
        self.inputs = tuple(int(i) for i in graph.vector(1, "int32"))
        self.outputs = tuple(int(i) for i in graph.vector(2, "int32"))
        self.ops = []
        for i, op in enumerate(graph.tables(3)):
            name = codes[op.scalar(0, "I")]
            options: dict[str, Any] = {}
            opt = op.table(4)
            if opt is not None and name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                act_field = 3 if name == "CONV_2D" else 4
                options = {"padding": "SAME" if opt.scalar(0, "b") == 0 else "VALID",
                           "stride_w": opt.scalar(1, "i"), "stride_h": opt.scalar(2, "i"),
                           "activation": _ACTIVATIONS.get(opt.scalar(act_field, "b"), "?")}
                if name == "DEPTHWISE_CONV_2D":
                    options["depth_multiplier"] = opt.scalar(3, "i")
            self.ops.append(TfliteOp(i, name, tuple(int(x) for x in op.vector(1, "int32")),
                                     tuple(int(x) for x in op.vector(2, "int32")), options))
        self.producer = {o: op for op in self.ops for o in op.outputs}

    def buffer_bytes(self, index: int) -> bytes:
        if index >= len(self._buffers):
            return b""
        b = self._buffers[index]
        offset, size = b.scalar(1, "Q"), b.scalar(2, "Q")
        if offset > 1:  # models over 2 GB keep buffers after the flatbuffer
            return self.buf[offset:offset + size]
        return b.vector(0, "uint8").tobytes()

    def constant(self, index: int) -> np.ndarray | None:
        """The stored values of tensor ``index`` as float32 (dequantized), or None if it is computed."""
        t = self.tensors[index]
        raw = self.buffer_bytes(t.buffer)
        if not raw:
            return None
        if t.sparse:
            raise CheckpointError(f"{self.path}: tensor {index} ({t.name}) is stored sparse; not supported")
        if t.dtype in ("int4", "string") or t.dtype.startswith("type"):
            raise CheckpointError(f"{self.path}: tensor {index} ({t.name}) has type {t.dtype}; not supported")
        values = np.frombuffer(raw, np.dtype(t.dtype).newbyteorder("<")).reshape(t.shape)
        if t.dtype in ("int8", "uint8", "int16") or (t.dtype == "int32" and t.scale.size):
            return dequantize(values, t, self.path)
        return values.astype(np.float32)

    def weight(self, index: int) -> tuple[np.ndarray, str]:
        """A weight tensor, following a DEQUANTIZE op that feeds it: ``(float32 values, how stored)``."""
        op = self.producer.get(index)
        if op is not None and op.name == "DEQUANTIZE":
            index = op.inputs[0]
        t = self.tensors[index]
        values = self.constant(index)
        if values is None:
            raise CheckpointError(f"{self.path}: tensor {index} ({t.name}) is computed in the graph, not stored")
        return values, describe_storage(t)

    def label_file(self) -> tuple[str, list[str]] | None:
        """``(name, labels)`` of a label list packed with the model (MediaPipe's appended zip), or None."""
        try:
            with zipfile.ZipFile(io.BytesIO(self.buf)) as z:
                names = [n for n in z.namelist() if n.lower().endswith(".txt") and "label" in n.lower()]
                if not names:
                    return None
                text = z.read(names[0]).decode("utf-8")
        except (zipfile.BadZipFile, OSError, UnicodeDecodeError):
            return None
        return names[0], [line.strip() for line in text.splitlines() if line.strip()]


def describe_storage(t: TfliteTensor) -> str:
    if t.dtype in ("int8", "uint8", "int16"):
        how = f"per-channel (axis {t.quantized_dimension}, {t.scale.size} scales)" if t.scale.size > 1 \
            else "per-tensor"
        return f"{t.dtype} {how}"
    return t.dtype


def dequantize(values: np.ndarray, t: TfliteTensor, path: str) -> np.ndarray:
    """``scale[c] * (q - zero_point[c])`` in float32 along ``t.quantized_dimension``."""
    if t.scale.size == 0:
        raise CheckpointError(f"{path}: tensor {t.index} ({t.name}) is {t.dtype} without quantization scales")
    q = values.astype(np.float32)
    zero = t.zero_point.astype(np.float32) if t.zero_point.size else np.zeros(1, np.float32)
    if t.scale.size == 1:
        return (t.scale[0] * (q - zero[0])).astype(np.float32)
    axis = t.quantized_dimension
    if values.shape[axis] != t.scale.size:
        raise CheckpointError(f"{path}: tensor {t.index} ({t.name}) has {t.scale.size} scales for "
                              f"{values.shape[axis]} channels on axis {axis}")
    shape = [1] * values.ndim
    shape[axis] = -1
    zero = np.broadcast_to(zero, t.scale.shape)
    return (t.scale.reshape(shape) * (q - zero.reshape(shape))).astype(np.float32)


def looks_like_yamnet_tflite(path: str) -> bool:
    """A TFLite file with YAMNet's 14 CONV_2D + 13 DEPTHWISE_CONV_2D."""
    try:
        m = TfliteModel(path)
    except (CheckpointError, OSError):
        return False
    names = [op.name for op in m.ops]
    return names.count("CONV_2D") == 14 and names.count("DEPTHWISE_CONV_2D") == 13


def read_tflite(path: str, *, loss_type: str | None = None, require_head: bool = True):
    """A YAMNet ``.tflite`` -> ``(config, weights, report)``: dequantized, BatchNorm folded (see module doc).

    Raises:
      CheckpointError: not YAMNet's layer structure (op, shape, stride or padding named), a frontend
        constant that differs from ours, no classifier when ``require_head``.
    """
    from htsat_jax.models import yamnet as model_lib
    from htsat_jax.models import yamnet_frontend as frontend

    m = TfliteModel(path)
    convs = [op for op in m.ops if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    expected = ["CONV_2D"] + ["DEPTHWISE_CONV_2D", "CONV_2D"] * 13
    if [op.name for op in convs] != expected:
        raise CheckpointError(f"{path}: expected YAMNet's 27 convolutions (CONV_2D, then DEPTHWISE_CONV_2D / "
                              f"CONV_2D x 13) in graph order, found {[op.name for op in convs]}")
    report = YamnetReport(source=path, container=f"TFLite flatbuffer v{m.version}"
                          + (f" ({m.description})" if m.description else ""))
    storage: dict[str, int] = {}
    weights: dict = {}
    var = np.float32(1.0) - np.float32(model_lib.BN_EPSILON)
    plan = []  # (op, layer, kind, expected kernel shape as stored, stride)
    for i, (stride, cin, cout) in enumerate(_layers(1), start=1):
        if i == 1:
            plan.append(("layer1", "conv", (cout, 3, 3, cin), stride))
        else:
            plan += [(f"layer{i}", "depthwise_conv", (1, 3, 3, cin), stride),
                     (f"layer{i}", "pointwise_conv", (cout, 1, 1, cin), 1)]
    for op, (layer, kind, shape, stride) in zip(convs, plan):
        where = f"{path}: op {op.index} ({op.name}, {layer}/{kind})"
        kernel, how = m.weight(op.inputs[1])
        if kernel.shape != shape:
            raise CheckpointError(f"{where}: weight has shape {kernel.shape}, YAMNet stores {shape}")
        opts = op.options
        if opts and ((opts["stride_h"], opts["stride_w"]) != (stride, stride) or opts["padding"] != "SAME"):
            raise CheckpointError(f"{where}: stride {(opts['stride_h'], opts['stride_w'])} padding "
                                  f"{opts['padding']}, YAMNet has stride {stride} and SAME padding")
        if opts and opts["activation"] not in ("RELU", "NONE"):
            raise CheckpointError(f"{where}: fused activation {opts['activation']}, YAMNet uses ReLU")
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            bias = np.zeros(shape[0] if kind != "depthwise_conv" else shape[3], np.float32)
        else:
            bias = m.weight(op.inputs[2])[0].reshape(-1)
        if kind == "depthwise_conv":
            ours = ("depthwise_conv", "depthwise_bn")
            kernel = kernel.transpose(1, 2, 0, 3)          # [1, kh, kw, C] -> (kh, kw, 1, C)
        else:
            ours = ("conv", "bn") if kind == "conv" else ("pointwise_conv", "pointwise_bn")
            kernel = kernel.transpose(1, 2, 3, 0)          # [out, kh, kw, in] -> HWIO
        _set(weights, ("backbone", layer, ours[0], "kernel"), np.ascontiguousarray(kernel))
        _set(weights, ("backbone", layer, ours[1], "bias"), bias.astype(np.float32))
        _set(weights, ("backbone", layer, ours[1], "mean"), np.zeros_like(bias, np.float32))
        _set(weights, ("backbone", layer, ours[1], "var"), np.full_like(bias, var, np.float32))
        storage[how] = storage.get(how, 0) + 1
        report.converted.append(f"backbone/{layer}/{ours[0]}/kernel <- tensor {op.inputs[1]} ({how}); "
                                f"{ours[1]}/bias <- folded bias")
    # Classifier: the FULLY_CONNECTED with a (classes, 1024) weight.
    heads = [op for op in m.ops if op.name == "FULLY_CONNECTED"
             and len(m.tensors[_source(m, op.inputs[1])].shape) == 2
             and m.tensors[_source(m, op.inputs[1])].shape[1] == EMBEDDING]
    num_classes = None
    if heads:
        op = heads[-1]
        kernel, how = m.weight(op.inputs[1])
        bias = (m.weight(op.inputs[2])[0].reshape(-1) if len(op.inputs) > 2 and op.inputs[2] >= 0
                else np.zeros(kernel.shape[0], np.float32))
        num_classes = int(kernel.shape[0])
        _set(weights, ("logits", "kernel"), np.ascontiguousarray(kernel.T))
        _set(weights, ("logits", "bias"), bias.astype(np.float32))
        report.converted.append(f"logits/kernel <- tensor {op.inputs[1]} ({how}), logits/bias <- tensor {op.inputs[2]}")
        storage[how] = storage.get(how, 0) + 1
    elif require_head:
        raise CheckpointError(f"{path}: no classifier (a FULLY_CONNECTED with a (classes, {EMBEDDING}) weight)")
    _check_frontend(m, report, frontend)
    report.notes.append("BatchNorm is folded into the convolutions in .tflite files: each BatchNorm holds the folded "
                        "bias with mean 0, var 1 - 1e-4 (identity); training with batch statistics would re-centre "
                        "the layers, so the model keeps its stored statistics in training (freeze_bn=True)")
    config = dataclasses.replace(_config(num_classes or NUM_CLASSES, 1, loss_type), freeze_bn=True)
    names = _default_names(config.num_classes) if num_classes else None
    packed = m.label_file()
    if packed is not None:
        file_name, labels = packed
        if len(labels) != config.num_classes:
            raise CheckpointError(f"{path}: its label file {file_name} lists {len(labels)} classes, the classifier "
                                  f"has {config.num_classes}")
        if names is not None and labels != names:
            diff = [(i, a, b) for i, (a, b) in enumerate(zip(labels, names)) if a != b]
            report.notes.append(f"the file's labels ({file_name}) differ from the derived AudioSet list at "
                                f"{len(diff)} indices (first: {diff[:3]}); using the file's")
        elif names is not None:
            report.verified[file_name] = f"equals the {len(names)} names derived from the AudioSet list"
        names = labels
    report.class_names = names
    report.inferred = {"num_classes": num_classes, "loss_type": config.loss_type,
                       "weights": ", ".join(f"{v} {k}" for k, v in storage.items()),
                       "input": [(m.tensors[i].name, m.tensors[i].shape) for i in m.inputs]}
    return config, weights, report


def _source(m: TfliteModel, index: int) -> int:
    op = m.producer.get(index)
    return op.inputs[0] if op is not None and op.name == "DEQUANTIZE" else index


def _check_frontend(m: TfliteModel, report: YamnetReport, frontend) -> None:
    """The file's Hann window, mel matrix and log offset against ours (where the file has them)."""
    mel = frontend.mel_matrix("float32")
    for op in m.ops:
        if op.name == "MUL":
            for i in op.inputs:
                t = m.tensors[i]
                if int(np.prod(t.shape or (0,))) == frontend.WINDOW and m.buffer_bytes(t.buffer):
                    w = m.constant(i).reshape(-1)
                    err = float(np.abs(w - frontend.hann_window()).max())
                    if err > 1e-6:
                        raise CheckpointError(f"{m.path}: tensor {i} ({frontend.WINDOW}-sample window) differs from "
                                              f"the periodic Hann window by {err:.3g}; another frontend")
                    report.verified[f"tensor {i} (window)"] = f"periodic Hann 400, max |diff| {err:.2g}"
        if op.name != "FULLY_CONNECTED":
            continue
        src = _source(m, op.inputs[1])
        if m.tensors[src].shape != (frontend.MEL_BANDS, frontend.FFT // 2 + 1):
            continue
        w, how = m.weight(op.inputs[1])
        t = m.tensors[src]
        step = float(t.scale.max()) if t.scale.size else 0.0
        err = float(np.abs(w.T - mel).max())
        if err > 0.5 * step + 1e-5:
            raise CheckpointError(f"{m.path}: tensor {src} (mel matrix) differs from the HTK mel matrix by {err:.3g} "
                                  f"(more than int8 rounding, {0.5 * step:.3g}); another frontend")
        report.verified[f"tensor {src} (mel matrix, {how})"] = (f"max |diff| {err:.3g} vs tf.signal mel "
                                                               f"(int8 half step {0.5 * step:.3g})")
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            offset = m.weight(op.inputs[2])[0]
            err = float(np.abs(offset - frontend.LOG_OFFSET).max())
            if err > 1e-7:
                raise CheckpointError(f"{m.path}: tensor {op.inputs[2]} (mel bias = log offset) is not "
                                      f"{frontend.LOG_OFFSET} (max |diff| {err:.3g}); another frontend")
            report.verified[f"tensor {op.inputs[2]} (log offset)"] = f"{frontend.LOG_OFFSET} everywhere"


# ============================================================================ entry points


def load_yamnet(path: str, *, loss_type: str | None = None, require_head: bool = True, **kwargs):
    """A YAMNet ``.h5`` or ``.tflite`` (by content) -> ``(config, weights, report)``."""
    from htsat_jax.models import yamnet as model_lib

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"YAMNet file not found: {path}")
    kind = model_lib.file_kind(path)
    if kind == "h5":
        return read_h5(path, loss_type=loss_type, require_head=require_head)
    if kind == "tflite":
        return read_tflite(path, loss_type=loss_type, require_head=require_head)
    raise CheckpointError(f"{path}: neither a Keras HDF5 (.h5) nor a TFLite (.tflite) file")


def add_cli(sub) -> None:
    """The ``yamnet-h5`` and ``yamnet-tflite`` commands of ``python -m htsat_jax.convert``."""
    for name, what, reader in (("yamnet-h5", "Google's float YAMNet Keras weights (yamnet.h5)", read_h5),
                               ("yamnet-tflite", "a YAMNet .tflite file (TF-Hub / MediaPipe; 8-bit weights "
                                                 "dequantized, BatchNorm folded)", read_tflite)):
        p = sub.add_parser(name, help=f"{what} -> model directory")
        p.add_argument("input", help=what)
        p.add_argument("output_dir", help="directory to write (must not exist or be empty)")
        p.add_argument("--loss_type", choices=("clip_bce", "clip_ce"), default=None,
                       help="output activation (default clip_bce: per-patch sigmoid, as released)")
        p.add_argument("--clip_pool", choices=("mean", "max"), default="mean",
                       help="clip score = mean (Google's inference, default) or max over patches")
        p.add_argument("--class_names", default=None,
                       help="CSV (index,mid,display_name) or one name per line; default: the 521 YAMNet names "
                            "derived from the AudioSet list (or the file's own labels)")
        p.set_defaults(convert=lambda args, reader=reader: _cli_convert(reader, args))


def _cli_convert(reader, args):
    config, weights, report = reader(args.input, loss_type=args.loss_type)
    if args.clip_pool != config.clip_pool:
        config = dataclasses.replace(config, clip_pool=args.clip_pool)
    return config, weights, report
