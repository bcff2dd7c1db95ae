r"""ONNX export of a model with its frontend inside the graph.

    python -m htsat_jax.inference.export --checkpoint MODEL --output model.onnx [--seconds 10] \
        [--batch dynamic|N] [--opset 20] [--no_verify]

MODEL is anything ``AudioTagger.from_checkpoint`` accepts: a model directory of this project
(``WORKDIR/model`` from training, ``python -m htsat_jax.convert`` output) or an official
checkpoint. The graph is the model's ``export_forward`` (``htsat_jax.models``): for HTS-AT the
official inference forward (``infer_mode=True``, eval mode: running BatchNorm statistics, no
dropout), the same computation ``AudioTagger`` runs on one window:

    input   waveform          float32 (batch, samples)  mono, in [-1, 1], at the model's sample rate
    output  clipwise_output   float32 (batch, classes)  sigmoid scores (clip_bce) or logits (clip_ce)
            framewise_output  float32 (batch, target_frames, classes)  sigmoid (1024 for the paper model)
            latent_output     float32 (batch, features) clip embedding

``samples`` is fixed at export (``--seconds``, default 10 s); ``batch`` is symbolic unless
``--batch N``. The ONNX ``metadata_props`` hold what is needed to decode the outputs:
``class_names`` (JSON list), ``sample_rate``, ``num_samples``, ``clipwise_activation``,
``output_names``, ``model_name`` and the model config (``model_config``, JSON).

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
                class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Export the inference forward, log-mel frontend included, to an ONNX file.

    Args:
      model_or_tagger: a model (float32) or an ``AudioTagger`` (its class names are kept).
      path: the ``.onnx`` file to write (its folder must exist).
      num_samples: waveform length fixed in the graph; default 10 s at the model's rate (the
        model's ``export_forward`` says what it accepts: HTS-AT at most ``target_frames`` STFT
        frames, 10.23 s for the paper model).
      dynamic_batch: symbolic batch dimension ``"batch"``; else the batch is ``batch_size``.
      opset: ONNX opset (>= 20 for the DFT the frontend uses).
      class_names: override the names stored in the metadata (default: the tagger's or
        ``class_<i>``; 527-class models get the AudioSet names).

    Returns:
      ``{"path", "bytes", "inputs", "outputs", "opset", "metadata", "export_s"}``; inputs and
      outputs are ``{"name", "shape", "dtype"}`` with ``"batch"`` for a symbolic batch.

    Raises:
      ExportError: missing export dependencies, unwritable output, bad length or model dtype.
    """
    tagger = _as_tagger(model_or_tagger, class_names)
    model, config = tagger.model, tagger.config
    if getattr(model, "dtype", None) not in (None, jnp.float32):
        raise ExportError(f"the model computes in {jnp.dtype(model.dtype).name}; export a float32 model "
                          "(load it without dtype=...)")
    num_samples = int(round(10.0 * tagger.sample_rate)) if num_samples is None else int(num_samples)
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
        proto = to_onnx(lambda x: tuple(forward(x)[k] for k in output_names), [(batch, num_samples)],
                        model_name=models.name_of(config), opset=opset, input_names=[INPUT_NAME],
                        output_names=output_names)
    meta = _metadata(tagger, num_samples, output_names)
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
            "export_s": time.perf_counter() - start}


# ----------------------------------------------------------------------------- running the file


def onnx_session(path: str, *, threads: int | None = None, spinning: bool = True):
    """An onnxruntime CPU session for an exported file.

    ``threads``: intra-op threads (None: ORT's choice, one per core). ``spinning=False`` lets idle
    threads sleep instead of busy-waiting, which is faster on a CPU shared with other work.
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
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="waveform length fixed in the graph, at the model's rate (default 10)")
    parser.add_argument("--batch", type=_batch_arg, default=None, metavar="dynamic|N",
                        help="'dynamic' (default): any batch size; N: fixed batch")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--class_names", default=None,
                        help="class names to store (class_labels_indices.csv or one name per line)")
    parser.add_argument("--loss_type", default=None, choices=["clip_bce", "clip_ce"],
                        help="official .ckpt only: override the guessed output activation")
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
        num_samples = int(round(args.seconds * tagger.sample_rate))
        info = export_onnx(tagger, args.output, num_samples=num_samples, dynamic_batch=args.batch is None,
                           batch_size=args.batch or 1, opset=args.opset, class_names=names)
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
    if errors is not None:
        print("  onnxruntime vs JAX, max |diff| on a check signal: "
              + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
