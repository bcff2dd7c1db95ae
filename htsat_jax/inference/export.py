r"""ONNX export of a model with its frontend inside the graph.

    python -m htsat_jax.inference.export --checkpoint MODEL --output model.onnx [--seconds S] \
        [--batch dynamic|N] [--opset 20] [--int8] [--no_verify]

MODEL is anything ``AudioTagger.from_checkpoint`` accepts: a model directory of this project
(``WORKDIR/model`` from training, ``python -m htsat_jax.convert`` output) or an official
checkpoint. The graph is the model's ``export_forward`` (``htsat_jax.models``): for HTS-AT the
official inference forward (``infer_mode=True``, eval mode: running BatchNorm statistics, no
dropout), the same computation ``AudioTagger`` runs on one window (YAMNet: per-patch ``framewise_output``
and ``embeddings`` too, see ``htsat_jax.models.yamnet.export_forward``):

    input   waveform          float32 (batch, samples)  mono, in [-1, 1], at the model's sample rate
    output  clipwise_output   float32 (batch, classes)  sigmoid scores (clip_bce) or logits (clip_ce)
            framewise_output  float32 (batch, target_frames, classes)  sigmoid (1024 for the paper model)
            latent_output     float32 (batch, features) clip embedding

``samples`` is fixed at export (``--seconds``; default the model module's ``EXPORT_SECONDS``:
1 s for the on-device models YAMNet and LEAN, else 10 s); ``batch`` is symbolic unless
``--batch N``. ``--int8`` stores the large weights as int8 with a float32 scale per output channel,
dequantized in the graph (``DequantizeLinear``), about a quarter of the float size; activations
stay float32 (:func:`quantize_weights_int8`). The ONNX ``metadata_props`` hold what is needed to
decode the outputs: ``class_names`` (JSON list), ``sample_rate``, ``num_samples``,
``clipwise_activation``, ``output_names``, ``model_name``, ``weights`` and the model config
(``model_config``, JSON).

Needs the optional export requirements: ``pip install -r requirements-export.txt``
(jax2onnx, onnx, onnxruntime).

Two things of jax2onnx 0.13.0 need help, both handled here and checked by ``tests/test_export.py``:

* its ``nnx.Conv`` shim passes Flax's padding list as a primitive parameter, which JAX >= 0.7
  rejects (unhashable): during the export the padding is made a tuple;
* its complex-number lowering loses shapes when the batch is symbolic (``rfft`` then feeds ONNX
  ``DFT`` a tensor without the trailing real axis, ``real``/``imag`` pick the wrong axis). The
  exported frontend therefore computes the power spectrum with one primitive of its own,
  :func:`power_spectrum`: in JAX it is ``|rfft|^2`` exactly as ``htsat_jax.models.frontend`` computes it;
  in ONNX it is ``Unsqueeze -> DFT(onesided) -> Mul -> ReduceSum``, no complex tensors.

The framing of the frontend is done with reshapes and slices instead of the gather of
``htsat_jax.models.frontend`` (same values, and no ``(frames, n_fft)`` int64 index table in the file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import warnings
from typing import Any, Iterator, Sequence

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.interpreters import mlir

from htsat_jax import models
from htsat_jax.inference.tagger import AudioTagger
from htsat_jax.models import frontend as frontend_lib

INPUT_NAME = "waveform"
BATCH_DIM = "batch"
# The frontend's DFT takes its axis as an input, which needs opset >= 20. The default is that lowest
# opset, for the widest runtime support; jax2onnx's own default (23) works as well.
DEFAULT_OPSET = 20
MIN_OPSET = 20
INSTALL_HINT = "pip install -r requirements-export.txt"
# Loggers of jax2onnx / onnx_ir that print harmless noise during an export: tracebacks of optional
# dm_pix plugins that do not import with this JAX, and "value type ... not known" for shape constants.
_NOISY_LOGGERS = ("jax2onnx", "onnx_ir")
WEIGHT_FORMATS = ("float", "int8")
# With int8 weights, parameters with fewer elements stay float32 (biases, BatchNorm, small kernels):
# they cost little space.
INT8_MIN_ELEMENTS = 4096


class ExportError(RuntimeError):
    """The model cannot be exported as asked (missing dependency, bad length, unwritable output...)."""


# ----------------------------------------------------------------------------- export-friendly frontend


def frame_signal(padded: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """``(B, P)`` -> ``(B, 1 + (P - n_fft) // hop, n_fft)`` frames, ``frames[:, t, i] = padded[:, t*hop + i]``.

    The same frames as ``htsat_jax.models.frontend`` gathers, built from ``hop``-sample blocks: frame ``t``
    is blocks ``t .. t + ceil(n_fft / hop) - 1`` side by side, cut to ``n_fft``. Only reshapes,
    slices and a concatenation, so the graph holds no index table.
    """
    length = padded.shape[-1]
    num_frames = 1 + (length - n_fft) // hop
    per_frame = -(-n_fft // hop)
    num_blocks = num_frames + per_frame - 1
    need = num_blocks * hop
    if need > length:  # the last frame's last block runs past the end: zeros, never read
        padded = jnp.pad(padded, ((0, 0), (0, need - length)))
    blocks = padded[:, :need].reshape(padded.shape[0], num_blocks, hop)
    frames = jnp.concatenate([blocks[:, j:j + num_frames] for j in range(per_frame)], axis=-1)
    return frames[..., :n_fft]


def _power_spectrum_impl(frames: jax.Array) -> jax.Array:
    """``|rfft(frames)|^2`` along the last axis, written as ``htsat_jax.models.frontend`` writes it."""
    spec = jnp.fft.rfft(frames, axis=-1)
    return jnp.real(spec) ** 2 + jnp.imag(spec) ** 2


def _power_spectrum_abstract(frames):
    return jax.core.ShapedArray(frames.shape[:-1] + (frames.shape[-1] // 2 + 1,), frames.dtype)


power_spectrum_p = jax.extend.core.Primitive("htsat_power_spectrum")
power_spectrum_p.def_impl(_power_spectrum_impl)
power_spectrum_p.def_abstract_eval(_power_spectrum_abstract)
mlir.register_lowering(power_spectrum_p, mlir.lower_fun(_power_spectrum_impl, multiple_results=False))


def power_spectrum(frames: jax.Array) -> jax.Array:
    """``(..., n_fft)`` real frames -> power spectrum ``(..., n_fft // 2 + 1)``.

    One primitive so the ONNX export can lower it without complex tensors (see module docstring);
    in JAX (eager or jit) it runs :func:`_power_spectrum_impl`, the frontend's own arithmetic.
    """
    return power_spectrum_p.bind(frames)


def log_mel(waveform: jax.Array, config: frontend_lib.FrontendConfig) -> jax.Array:
    """``htsat_jax.models.frontend.log_mel`` with slice-based framing: ``(B, S)`` -> ``(B, 1 + S // hop, mels)`` dB."""
    pad = config.n_fft // 2
    if waveform.shape[-1] <= pad:
        raise ExportError(f"{waveform.shape[-1]} samples; the frontend needs more than {pad} (n_fft // 2)")
    padded = jnp.pad(waveform, ((0, 0), (pad, pad)), mode="reflect")
    frames = frame_signal(padded, config.n_fft, config.hop_length)
    frames = frames * jnp.asarray(frontend_lib.hann_window(config.n_fft), dtype=waveform.dtype)
    power = power_spectrum(frames)
    mel_basis = jnp.asarray(frontend_lib.mel_filterbank(config), dtype=power.dtype)
    mel = jnp.matmul(power, mel_basis, precision=jax.lax.Precision.HIGHEST)
    # The frontend's log floor (torchlibrosa amin); shared so the two can never drift apart.
    return 10.0 * jnp.log10(jnp.maximum(mel, frontend_lib._AMIN))


# ----------------------------------------------------------------------------- jax2onnx plumbing


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Raise the noisy jax2onnx / onnx_ir loggers to ERROR for the duration of an export, and hide
    the DeprecationWarnings its Flax shims raise (``Variable.value``); ours still show."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"jax2onnx\.")
            # Under jax2onnx's shims a division in YAMNet's pooling asks JAX for float64, which JAX
            # (x64 off) truncates to float32 with this warning; the graph holds no float64.
            warnings.filterwarnings("ignore", message="Explicitly requested dtype float64", category=UserWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _require_export_deps():
    """Import jax2onnx, onnx and onnxruntime, or say how to install them."""
    try:
        with _quiet_logs():
            import jax2onnx  # noqa: F401
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ExportError(f"ONNX export needs jax2onnx, onnx and onnxruntime ({e}); {INSTALL_HINT}") from e
    _register_power_spectrum_plugin()
    return jax2onnx, onnx


_PLUGIN_REGISTERED = False


def _register_power_spectrum_plugin() -> None:
    """Teach jax2onnx to lower :data:`power_spectrum_p`: real ONNX ops only (opset >= 20).

    ``(..., n)`` -> Unsqueeze to ``(..., n, 1)`` (DFT's real-input layout) -> one-sided DFT along
    ``n`` -> ``(..., n // 2 + 1, 2)`` (real, imag) -> square -> sum over the last axis.
    """
    global _PLUGIN_REGISTERED
    if _PLUGIN_REGISTERED:
        return
    import onnx_ir as ir
    from jax2onnx.plugins.plugin_system import PrimitiveLeafPlugin, register_primitive

    def int64_constant(ctx, value, name):
        const = ctx.builder.add_initializer_from_array(name=ctx.fresh_name(name),
                                                       array=np.asarray(value, np.int64))
        const.type = ir.TensorType(ir.DataType.INT64)
        const.shape = ir.Shape(np.shape(value))
        return const

    @register_primitive(jaxpr_primitive=power_spectrum_p.name, context="primitives.htsat_jax",
                        component="power_spectrum", since="htsat_jax", onnx=[], testcases=[])
    class PowerSpectrumPlugin(PrimitiveLeafPlugin):
        def lower(self, ctx, eqn) -> None:
            (x_var,), (out_var,) = eqn.invars, eqn.outvars
            rank = len(x_var.aval.shape)
            n_fft = int(x_var.aval.shape[-1])
            x = ctx.get_value_for_var(x_var, name_hint=ctx.fresh_name("frames"))
            out = ctx.get_value_for_var(out_var, name_hint=ctx.fresh_name("power"))
            real = ctx.builder.Unsqueeze(x, int64_constant(ctx, [-1], "real_axis"),
                                         _outputs=[ctx.fresh_name("frames_real")])
            real.type = x.type
            pair = ctx.builder.DFT(real, int64_constant(ctx, n_fft, "dft_length"),
                                   int64_constant(ctx, rank - 1, "dft_axis"),
                                   _outputs=[ctx.fresh_name("spectrum")], inverse=0, onesided=1)
            pair.type = x.type
            squared = ctx.builder.Mul(pair, pair, _outputs=[ctx.fresh_name("spectrum_sq")])
            squared.type = x.type
            power = ctx.builder.ReduceSum(squared, int64_constant(ctx, [-1], "pair_axis"), keepdims=0,
                                          _outputs=[out.name])
            power.type = out.type
            power.shape = out.shape
            ctx.bind_value_for_var(out_var, power)

    _PLUGIN_REGISTERED = True


@contextlib.contextmanager
def _hashable_conv_padding() -> Iterator[None]:
    """Make Flax's canonical conv padding a tuple while jax2onnx traces.

    jax2onnx 0.13.0's ``nnx.Conv`` shim binds ``canonicalize_padding(...)`` (a list of pairs)
    as a primitive parameter; JAX >= 0.7 requires hashable parameters. Same values, as a tuple.
    """
    from flax.nnx.nn import linear

    original = linear.canonicalize_padding

    def canonicalize_padding(padding, rank):
        out = original(padding, rank)
        return out if isinstance(out, str) else tuple(tuple(p) for p in out)

    linear.canonicalize_padding = canonicalize_padding
    try:
        yield
    finally:
        linear.canonicalize_padding = original


def _as_tagger(model_or_tagger: nnx.Module | AudioTagger, class_names: Sequence[str] | None) -> AudioTagger:
    if isinstance(model_or_tagger, AudioTagger):
        if class_names is not None:
            return AudioTagger(model_or_tagger.model, class_names=class_names)
        return model_or_tagger
    if isinstance(model_or_tagger, nnx.Module) and hasattr(model_or_tagger, "config"):
        return AudioTagger(model_or_tagger, class_names=class_names)
    raise TypeError(f"export_onnx takes a model or an AudioTagger, got {type(model_or_tagger).__name__}")


def _check_output_path(path: str) -> str:
    """Absolute output path whose folder exists and is writable (checked before the slow export)."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise ExportError(f"output {path} is a directory; give a file name such as {os.path.join(path, 'model.onnx')}")
    if not os.path.isdir(folder):
        raise ExportError(f"output folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ExportError(f"cannot write {path}: permission denied")
    return path


def _metadata(tagger: AudioTagger, num_samples: int, output_names: Sequence[str]) -> dict[str, str]:
    from htsat_jax import __version__

    config = tagger.config
    return {
        "class_names": json.dumps(tagger.names),
        "sample_rate": str(tagger.sample_rate),
        "num_samples": str(num_samples),
        "clipwise_activation": "sigmoid" if config.loss_type == "clip_bce" else "none (logits)",
        "framewise_activation": "sigmoid",
        "input_name": INPUT_NAME,
        "output_names": json.dumps(list(output_names)),
        "model_name": models.name_of(config),
        "model_config": json.dumps(config.to_dict()),
        "exporter": f"htsat_jax {__version__} (jax2onnx)",
    }


def _select(outputs: dict, names: Sequence[str]) -> tuple:
    return tuple(outputs[k] for k in names)


def default_seconds(config: Any) -> float:
    """Input length of an export when none is given: the model module's ``EXPORT_SECONDS``, else 10 s."""
    return float(getattr(models.module_of(config), "EXPORT_SECONDS", 10.0))


def _name_batch_axis(proto) -> None:
    """Every output is batch first (the model contract): name that axis ``"batch"`` where jax2onnx
    lost the name through a reshape (``batch * patches`` and back gives ``dynamic_<n>``)."""
    for value in proto.graph.output:
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].dim_value and dims[0].dim_param != BATCH_DIM:
            dims[0].dim_param = BATCH_DIM


def _io_summary(values) -> list[dict[str, Any]]:
    from onnx import helper

    out = []
    for v in values:
        dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        out.append({"name": v.name, "shape": dims,
                    "dtype": helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name})
    return out


def export_onnx(model_or_tagger: nnx.Module | AudioTagger, path: str, *, num_samples: int | None = None,
                dynamic_batch: bool = True, batch_size: int = 1, opset: int = DEFAULT_OPSET,
                class_names: Sequence[str] | None = None, weights: str = "float",
                int8_min_elements: int = INT8_MIN_ELEMENTS) -> dict[str, Any]:
    """Export the inference forward, log-mel frontend included, to an ONNX file.

    Args:
      model_or_tagger: a model (float32) or an ``AudioTagger`` (its class names are kept).
      path: the ``.onnx`` file to write (its folder must exist).
      num_samples: waveform length fixed in the graph; default the model module's
        ``EXPORT_SECONDS`` (YAMNet, LEAN: 1 s) or else 10 s, at the model's rate (the model's
        ``export_forward`` says what it accepts: HTS-AT at most ``target_frames`` STFT frames,
        10.23 s for the paper model).
      dynamic_batch: symbolic batch dimension ``"batch"``; else the batch is ``batch_size``.
      opset: ONNX opset (>= 20 for the DFT the frontend uses).
      class_names: override the names stored in the metadata (default: the tagger's or
        ``class_<i>``; 527-class models get the AudioSet names).
      weights: ``"float"`` (float32 everywhere) or ``"int8"``: weight-only quantization of the
        model's large weights (:func:`quantize_weights_int8`; activations stay float32).
      int8_min_elements: with ``"int8"``, weights smaller than this stay float32.

    Returns:
      ``{"path", "bytes", "inputs", "outputs", "opset", "metadata", "export_s", "weights",
      "quantization"}``; inputs and outputs are ``{"name", "shape", "dtype"}`` with ``"batch"``
      for a symbolic batch; ``quantization`` is :func:`quantize_weights_int8`'s summary (None for float).

    Raises:
      ExportError: missing export dependencies, unwritable output, bad length or model dtype.
    """
    tagger = _as_tagger(model_or_tagger, class_names)
    model, config = tagger.model, tagger.config
    if getattr(model, "dtype", None) not in (None, jnp.float32):
        raise ExportError(f"the model computes in {jnp.dtype(model.dtype).name}; export a float32 model "
                          "(load it without dtype=...)")
    if weights not in WEIGHT_FORMATS:
        raise ExportError(f"weights must be one of {WEIGHT_FORMATS}, got {weights!r}")
    if num_samples is None:
        num_samples = int(round(default_seconds(config) * tagger.sample_rate))
    num_samples = int(num_samples)
    # A copy in eval mode (BatchNorm flags read by jax2onnx's shim); the caller's model is untouched.
    frozen = nnx.merge(*nnx.split(model))
    frozen.eval()
    try:
        forward = models.module_of(config).export_forward(frozen, num_samples)
    except ValueError as e:
        raise ExportError(str(e)) from e
    if forward is None:
        raise ExportError(f"the {models.name_of(config)} model does not support ONNX export")
    output_names = list(jax.eval_shape(forward, jax.ShapeDtypeStruct((1, num_samples), jnp.float32)))
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: the frontend's DFT needs opset >= {MIN_OPSET}")
    if not dynamic_batch and batch_size < 1:
        raise ExportError(f"batch_size must be >= 1, got {batch_size}")
    path = _check_output_path(path)
    _, onnx = _require_export_deps()
    from jax2onnx import to_onnx

    batch = BATCH_DIM if dynamic_batch else int(batch_size)
    start = time.perf_counter()
    with _quiet_logs(), _hashable_conv_padding():
        # One call of ``forward``: a generator calling it per output traced the graph once per output
        # (every computation and constant repeated in the file).
        proto = to_onnx(lambda x: _select(forward(x), output_names), [(batch, num_samples)],
                        model_name=models.name_of(config), opset=opset, input_names=[INPUT_NAME],
                        output_names=output_names)
    if dynamic_batch:
        _name_batch_axis(proto)
    quantization = quantize_weights_int8(proto, frozen, min_elements=int8_min_elements) if weights == "int8" else None
    meta = _metadata(tagger, num_samples, output_names)
    meta["weights"] = ("float32" if quantization is None else
                       f"int8 weight-only: {quantization['tensors']} tensors ({quantization['params']} values) "
                       "int8 with a float32 scale per output channel (per tensor where the values already "
                       "lie on one int8 grid), DequantizeLinear in the graph; the rest float32")
    onnx.helper.set_model_props(proto, meta)
    proto.doc_string = (f"{models.name_of(config)} audio tagger, frontend included. Input: float32 waveform (batch, "
                        f"{num_samples}) in [-1, 1] at {tagger.sample_rate} Hz. See metadata_props.")
    onnx.checker.check_model(proto)
    try:
        onnx.save(proto, path)
    except OSError as e:
        raise ExportError(f"cannot write {path}: {e}") from e
    return {"path": path, "bytes": os.path.getsize(path), "inputs": _io_summary(proto.graph.input),
            "outputs": _io_summary(proto.graph.output), "opset": opset, "metadata": meta,
            "export_s": time.perf_counter() - start, "weights": weights, "quantization": quantization}


# ----------------------------------------------------------------------------- int8 weights


def _fingerprint(values: np.ndarray) -> tuple[int, bytes]:
    """Identity of a tensor's values up to transposition/reshaping: (size, digest of the sorted values)."""
    import hashlib

    flat = np.sort(np.asarray(values, np.float32).ravel() + np.float32(0.0))   # -0.0 -> 0.0: one sort order
    return flat.size, hashlib.sha1(flat.tobytes()).digest()


def _channel_axis(node, input_index: int, rank: int) -> int | None:
    """The output-channel axis of weight input ``input_index`` of ``node`` (None: not a weight input)."""
    if node.op_type == "Conv" and input_index == 1:
        return 0                                              # (out, in / groups, *kernel)
    if node.op_type == "MatMul" and input_index == 1 and rank >= 2:
        return rank - 1                                       # (..., in, out)
    if node.op_type == "Gemm" and input_index == 1 and rank == 2:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "Einsum" and rank >= 1:
        equation = next(a.s.decode() for a in node.attribute if a.name == "equation").replace(" ", "")
        lhs, _, out = equation.partition("->")
        operands = lhs.split(",")
        if input_index < len(operands) and "." not in operands[input_index] and out:
            letters = operands[input_index]
            kept = [i for i, c in enumerate(letters) if c in out]   # not contracted: an output axis
            if kept and len(letters) == rank:
                return kept[-1]
    return None


def _quantize_symmetric(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, int | None, float]:
    """Symmetric int8 of ``w`` with a scale per index of ``axis``: ``(q, scale, axis, max |w - q scale|)``.

    Weights that already lie on one int8 grid for the whole tensor (those of a ``.tflite`` with
    per-tensor scales, such as YAMNet's classifier) keep that grid: per-tensor is taken when it
    reconstructs ``w`` at least as well (``axis`` None, a scalar scale), so re-quantizing them loses nothing.
    """
    def quantize(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        peak = np.abs(rows).max(axis=1)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int8)
        return q, scale, float(np.max(np.abs(q * scale[:, None] - rows)))

    q_c, scale_c, error_c = quantize(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1))
    q_t, scale_t, error_t = quantize(w.reshape(1, -1))
    if error_t <= error_c:
        return q_t.reshape(w.shape), scale_t.reshape(()), None, error_t
    q_c = np.moveaxis(q_c.reshape((w.shape[axis],) + tuple(np.delete(w.shape, axis))), 0, axis)
    return np.ascontiguousarray(q_c), scale_c, axis, error_c


def _consumers(graph) -> dict[str, list[tuple[Any, int]]]:
    """Tensor name -> the ``(node, input index)`` pairs that read it."""
    out: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            out.setdefault(name, []).append((node, i))
    return out


def model_weight_names(proto, model: nnx.Module, min_elements: int = INT8_MIN_ELEMENTS) -> set[str]:
    """Initializers of ``proto`` holding one of ``model``'s parameters of at least ``min_elements``
    values, up to the transposition the exporter applies (``nnx.Conv``'s HWIO kernel is stored OIHW).
    Frontend constants (mel matrix, window) are not parameters, so they are never among them."""
    from onnx import TensorProto, numpy_helper

    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    params = {_fingerprint(np.asarray(x)) for x in leaves if np.size(x) >= min_elements}
    names = set()
    for init in proto.graph.initializer:
        if init.data_type == TensorProto.FLOAT and np.prod(init.dims) >= min_elements:
            if _fingerprint(numpy_helper.to_array(init)) in params:
                names.add(init.name)
    return names


def fold_batch_norm(proto) -> int:
    """``Conv -> BatchNormalization`` (inference, constant statistics) -> one ``Conv`` whose kernel
    and bias hold the normalisation (what ONNX Runtime does when it loads the file): the four
    BatchNorm vectors of each pair leave the file. The kernel keeps its initializer name. Returns
    the number of pairs folded."""
    from onnx import numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    consumers = _consumers(graph)
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}
    folded, drop = 0, []
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        attrs = {a.name: a for a in bn.attribute}
        if "training_mode" in attrs and attrs["training_mode"].i:
            continue
        conv = producer.get(bn.input[0])
        if (conv is None or conv.op_type != "Conv" or bn.input[0] in outputs
                or len(consumers.get(bn.input[0], [])) != 1 or not all(n in inits for n in bn.input[1:5])):
            continue
        kernel = conv.input[1]
        bias = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
        if kernel not in inits or len(consumers[kernel]) != 1:
            continue
        if bias and (bias not in inits or len(consumers[bias]) != 1):
            continue
        eps = attrs["epsilon"].f if "epsilon" in attrs else 1e-5
        scale, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:5])
        w = numpy_helper.to_array(inits[kernel]).astype(np.float64)
        b = numpy_helper.to_array(inits[bias]).astype(np.float64) if bias else np.zeros(w.shape[0])
        factor = scale / np.sqrt(var + eps)
        inits[kernel].CopyFrom(numpy_helper.from_array(
            (w * factor.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32), kernel))
        bias_name = bias or f"{kernel}_bias"
        new_bias = numpy_helper.from_array(((b - mean) * factor + beta).astype(np.float32), bias_name)
        if bias:
            inits[bias].CopyFrom(new_bias)
        else:
            graph.initializer.append(new_bias)
            inits[bias_name] = graph.initializer[-1]
            del conv.input[2:]
            conv.input.append(bias_name)
        conv.output[0] = bn.output[0]
        drop.append(bn)
        folded += 1
    for bn in drop:
        graph.node.remove(bn)
    _remove_unused_initializers(proto)
    return folded


def _remove_unused_initializers(proto) -> None:
    graph = proto.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    if len(kept) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(kept)


def dedupe_initializers(proto) -> int:
    """Initializers with the same type, shape and values share one name (jax2onnx repeats a constant
    at each use: an unrolled LSTM's bias once per step). Returns the bytes saved."""
    import hashlib

    graph = proto.graph
    first: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    saved = 0
    for init in graph.initializer:
        if init.data_location != 0 or not init.raw_data:   # external or typed-field data: left alone
            continue
        key = (init.data_type, tuple(init.dims), hashlib.sha1(init.raw_data).digest())
        if key in first:
            rename[init.name] = first[key]
            saved += len(init.raw_data)
        else:
            first[key] = init.name
    if not rename:
        return 0
    outputs = {o.name for o in graph.output}
    rename = {k: v for k, v in rename.items() if k not in outputs}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    _remove_unused_initializers(proto)
    return saved


def _shorten_names(proto) -> None:
    """A smaller file, same graph: no intermediate shape annotations (ONNX Runtime infers them), no
    node names, and intermediate tensors named ``t<n>`` (graph inputs, outputs and initializers keep
    their names). jax2onnx's long names and annotations are 5-10 % of a compact int8 file."""
    graph = proto.graph
    del graph.value_info[:]
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {t.name for t in graph.initializer}
    rename: dict[str, str] = {}
    for node in graph.node:
        node.name = ""
        for i, name in enumerate(node.output):
            if name and name not in keep:
                node.output[i] = rename.setdefault(name, f"t{len(rename):x}")
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]


def quantize_weights_int8(proto, model: nnx.Module, *, min_elements: int = INT8_MIN_ELEMENTS) -> dict[str, Any]:
    """Weight-only int8, in place: the model's large weights become int8 with a float32 scale per
    output channel, dequantized in the graph by ``DequantizeLinear`` (per axis, opset >= 13) whose
    output keeps the weight's name, so the original consumer is unchanged; activations stay float32.

    Steps: the weights are found (:func:`model_weight_names`: initializers of at least
    ``min_elements`` values equal to a parameter of ``model``, used only as the weight input of
    ``Conv``, ``MatMul``, ``Gemm`` or ``Einsum``); BatchNorm is folded into the convolutions
    (:func:`fold_batch_norm`; per-channel int8 is unaffected by that per-channel rescaling); each
    weight is quantized symmetrically, ``scale_c = max |w_c| / 127``, ``q = round(w / scale_c)`` in
    [-127, 127], zero point 0 (one scale for the whole tensor where that is at least as exact, see
    :func:`_quantize_symmetric`); repeated constants are shared (:func:`dedupe_initializers`), the
    intermediate shape annotations dropped and the intermediate names shortened (:func:`_shorten_names`).
    Frontend constants (mel matrix, window) and every smaller tensor stay float32.

    Returns ``{"tensors", "params", "float_elements", "max_rel_error", "batch_norms_folded"}``:
    quantized tensors and their values, float32 initializer values left, the largest
    ``max |w - dq(w)| / max |w|`` of a tensor, the BatchNorms folded.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    weights = model_weight_names(proto, model, min_elements)
    folded = fold_batch_norm(proto)
    consumers = _consumers(graph)
    outputs = {o.name for o in graph.output}
    new_nodes, kept, count, quantized, worst = [], [], 0, 0, 0.0
    for init in graph.initializer:
        if init.name not in weights or init.name in outputs or init.data_type != TensorProto.FLOAT:
            kept.append(init)
            continue
        w = numpy_helper.to_array(init)
        axes = {_channel_axis(node, i, w.ndim) for node, i in consumers.get(init.name, [])}
        if len(axes) != 1 or None in axes:
            kept.append(init)
            continue
        q, scale, axis, error = _quantize_symmetric(w, axes.pop())
        worst = max(worst, error / max(float(np.abs(w).max()), 1e-30))
        kept.append(numpy_helper.from_array(q, f"{init.name}_int8"))
        kept.append(numpy_helper.from_array(scale, f"{init.name}_scale"))
        kept.append(numpy_helper.from_array(np.zeros_like(scale, np.int8), f"{init.name}_zero_point"))
        shared = len(consumers[init.name]) > 1
        new_nodes.append(helper.make_node("DequantizeLinear",
                                          [f"{init.name}_int8", f"{init.name}_scale", f"{init.name}_zero_point"],
                                          [f"{init.name}_dequantized" if shared else init.name],
                                          name=f"{init.name}_dequantize", **({} if axis is None else {"axis": axis})))
        if shared:
            # ONNX Runtime gives each consumer of a DequantizeLinear its own copy (its QDQ node units):
            # an unrolled LSTM's recurrent kernel would be dequantized at every step (LEAN: 51 ms per
            # 1 s chunk instead of 9). A single-input Max, an identity, keeps one dequantization per run.
            new_nodes.append(helper.make_node("Max", [f"{init.name}_dequantized"], [init.name],
                                              name=f"{init.name}_shared"))
        count += 1
        quantized += int(w.size)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    produced = {n.output[0] for n in new_nodes}
    inputs = [v for v in graph.input if v.name not in produced]
    if len(inputs) != len(graph.input):  # weights listed as graph inputs (old IR style) are inputs no more
        del graph.input[:]
        graph.input.extend(inputs)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)   # dequantization first: the graph stays topologically sorted
    dedupe_initializers(proto)
    _shorten_names(proto)
    left = sum(int(np.prod(t.dims)) for t in graph.initializer if t.data_type == TensorProto.FLOAT)
    return {"tensors": count, "params": quantized, "float_elements": left, "max_rel_error": worst,
            "batch_norms_folded": folded}


# ----------------------------------------------------------------------------- running the file


def onnx_session(path: str, *, threads: int | None = None, spinning: bool = True, dequantize_at_load: bool = False):
    """An onnxruntime CPU session for an exported file.

    ``threads``: intra-op threads (None: ORT's choice, one per core). ``spinning=False`` lets idle
    threads sleep instead of busy-waiting, which is faster on a CPU shared with other work.
    ``dequantize_at_load`` (int8 files): ORT folds the ``DequantizeLinear`` of the weights when it
    loads the file (``session.disable_quant_qdq``), so it runs as fast as the float file and gives
    its numbers exactly, holding float weights in memory. By default ORT keeps the int8 weights,
    dequantizes the convolution weights at every run, and runs an int8 classifier ``Gemm`` as
    ``MatMulNBits``, which also rounds that layer's input to 8 bits (see ``tools/bench_export.py``).
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ExportError(f"running the ONNX file needs onnxruntime; {INSTALL_HINT}") from e
    options = ort.SessionOptions()
    options.log_severity_level = 3  # shape-merge notes about jax2onnx's annotations are not errors
    if threads:
        options.intra_op_num_threads = int(threads)
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if dequantize_at_load:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def read_metadata(path: str) -> dict[str, Any]:
    """The metadata of an exported file, JSON fields decoded (``class_names`` is a list...)."""
    import onnx

    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    for key in ("class_names", "output_names", "model_config"):
        if key in props:
            props[key] = json.loads(props[key])
    for key in ("sample_rate", "num_samples"):
        if key in props:
            props[key] = int(props[key])
    return props


def max_abs_errors(tagger: AudioTagger, session, waveform: np.ndarray) -> dict[str, float]:
    """Largest ``|onnx - jax|`` per output on ``waveform (batch, samples)`` at the model rate."""
    ref = tagger(waveform, tagger.sample_rate)
    names = [o.name for o in session.get_outputs()]
    got = session.run(names, {INPUT_NAME: np.asarray(waveform, np.float32)})
    return {name: float(np.max(np.abs(g - ref[name]))) for name, g in zip(names, got)}


def check_signal(num_samples: int, sample_rate: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    """``(batch, num_samples)`` float32 check signal: a chirp and bursts of noise, peak 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    rows = []
    for b in range(batch):
        f0 = 200.0 * (b + 1)
        chirp = np.sin(2 * np.pi * (f0 * t + 400.0 * t**2))
        bursts = rng.standard_normal(num_samples) * (np.sin(2 * np.pi * 0.7 * t + b) > 0.5)
        rows.append(0.3 * chirp + 0.2 * bursts)
    return np.clip(np.stack(rows), -0.5, 0.5).astype(np.float32)


# ----------------------------------------------------------------------------- CLI


def _batch_arg(value: str) -> int | None:
    if value == "dynamic":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--batch takes 'dynamic' or a positive integer, got {value!r}")
    return n


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    doc = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(prog="python -m htsat_jax.export", description="\n\n".join(doc[:6]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="model directory of this project or a released checkpoint file")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--seconds", type=float, default=None,
                        help="waveform length fixed in the graph, at the model's rate (default: the model's "
                             "export length, 1 for YAMNet and LEAN, 10 otherwise)")
    parser.add_argument("--batch", type=_batch_arg, default=None, metavar="dynamic|N",
                        help="'dynamic' (default): any batch size; N: fixed batch")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--class_names", default=None,
                        help="class names to store (class_labels_indices.csv or one name per line)")
    parser.add_argument("--loss_type", default=None, choices=["clip_bce", "clip_ce"],
                        help="official .ckpt only: override the guessed output activation")
    parser.add_argument("--int8", action="store_true",
                        help="int8 weights: weight-only quantization of the large weights, per output "
                             "channel, dequantized in the graph (about 4x smaller; activations stay float)")
    parser.add_argument("--no_verify", action="store_true",
                        help="skip running the file with onnxruntime against the JAX model")
    return parser.parse_args(argv)


def _format_io(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['name']} {e['dtype']} ({', '.join(str(d) for d in e['shape'])})" for e in entries)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 error)."""
    args = parse_args(argv)
    from htsat_jax import checkpoint as ckpt_lib

    try:
        _check_output_path(args.output)  # fail before loading and tracing the model
        _require_export_deps()
        tagger = AudioTagger.from_checkpoint(args.checkpoint, loss_type=args.loss_type)
        names = ckpt_lib.read_class_names(args.class_names) if args.class_names else None
        seconds = default_seconds(tagger.config) if args.seconds is None else args.seconds
        num_samples = int(round(seconds * tagger.sample_rate))
        info = export_onnx(tagger, args.output, num_samples=num_samples, dynamic_batch=args.batch is None,
                           batch_size=args.batch or 1, opset=args.opset, class_names=names,
                           weights="int8" if args.int8 else "float")
        errors = None
        if not args.no_verify:
            session = onnx_session(info["path"])
            waveform = check_signal(num_samples, tagger.sample_rate, batch=args.batch or 2)
            errors = max_abs_errors(_as_tagger(tagger, names), session, waveform)
    except (ExportError, ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta = info["metadata"]
    size = info["bytes"]
    print(f"wrote {info['path']}: {size / 1e6:.1f} MB ({size / 2**20:.1f} MiB), opset {info['opset']}, "
          f"exported in {info['export_s']:.0f} s")
    print(f"  input:   {_format_io(info['inputs'])}  ({meta['sample_rate']} Hz, "
          f"{num_samples / tagger.sample_rate:g} s, values in [-1, 1])")
    print(f"  outputs: {_format_io(info['outputs'])}")
    print(f"  clipwise activation: {meta['clipwise_activation']}; {tagger.config.num_classes} class names "
          "in metadata_props['class_names']")
    print(f"  weights: {meta['weights']}")
    if errors is not None:
        print(f"  onnxruntime vs JAX{' (int8 weights vs float)' if args.int8 else ''}, max |diff| on a check signal: "
              + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
