"""Device mesh, shardings and global batches for data-parallel and FSDP training.

The mesh has two axes: ``data`` (pure data parallelism) and ``fsdp`` (data parallelism whose
devices also split parameters and optimiser state). A batch is split over both axes; a
parameter is replicated, except under ``fsdp > 1`` where its largest dimension divisible by the
``fsdp`` size is split over that axis (the rest replicated). With ``fsdp == 1`` this is plain
data parallelism. XLA inserts the all-gathers / reduce-scatters; the maths is unchanged, so
results agree with a single device up to float summation order.

BatchNorm (``bn0``) inside one jitted program normalises over the *global* batch, which is
what the official ``sync_batchnorm=True`` does across GPUs.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def make_mesh(data: int = -1, fsdp: int = 1, devices: list | None = None) -> Mesh:
    """A ``(data, fsdp)`` mesh over ``devices`` (default: all). ``-1`` takes what is left.

    Raises:
      ValueError: when the sizes do not multiply to the number of devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if fsdp == -1 and data == -1:
        raise ValueError("mesh: at most one of data/fsdp may be -1")
    if fsdp == -1:
        fsdp = n // max(data, 1)
    if data == -1:
        data = n // max(fsdp, 1)
    if data * fsdp != n or data < 1 or fsdp < 1:
        raise ValueError(f"mesh data={data} x fsdp={fsdp} does not match {n} devices; set "
                         "--config.mesh.data / --config.mesh.fsdp (-1 = the rest)")
    # mesh_utils orders devices so that neighbours on the physical interconnect share an axis.
    try:
        from jax.experimental import mesh_utils
        grid = mesh_utils.create_device_mesh((data, fsdp), devices=devices)
    except Exception:  # noqa: BLE001 - unusual topologies (CPU test meshes): plain order
        grid = np.array(devices).reshape(data, fsdp)
    return Mesh(grid, BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def param_spec(shape: tuple[int, ...], fsdp_size: int, min_size: int = 2**12) -> P:
    """FSDP rule: split the largest dimension divisible by ``fsdp_size``; small arrays replicated."""
    if fsdp_size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp_size == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


def state_shardings(abstract_state: Any, mesh: Mesh) -> Any:
    """A sharding for every leaf of a (train) state pytree of arrays or ShapeDtypeStructs."""
    fsdp_size = mesh.shape["fsdp"]

    def one(x):
        shape = tuple(getattr(x, "shape", ()))
        return NamedSharding(mesh, param_spec(shape, fsdp_size))

    return jax.tree.map(one, abstract_state)


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Per-process numpy rows -> global arrays split over the mesh's batch axes.

    Every process passes its own ``global_batch_size // process_count`` rows; string
    arrays (ids) stay on the host and are dropped here.
    """
    sharding = batch_sharding(mesh)
    out = {}
    for key, value in local_batch.items():
        value = np.asarray(value)
        if value.dtype.kind in "USO":
            continue
        out[key] = jax.make_array_from_process_local_data(sharding, value)
    return out
