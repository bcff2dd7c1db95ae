"""The official optimisers: HTS-AT's AdamW + epoch-stepped schedule, and AST's Adam + MultiStepLR.

``config.optim.name`` picks one: ``"adamw"`` (HTS-AT, the default) or ``"adam_l2"`` (the AST recipe,
see :func:`ast_lr_schedule`).

HTSAT_SPEC §7: ``LambdaLR`` stepped once per epoch with ``lr = base_lr * scale(epoch)``:

* epochs ``0 .. len(warmup_factors)-1``: ``warmup_factors[epoch]`` (code: 0.02, 0.05, 0.1; the
  paper prints 0.05, 0.1, 0.2 -- we follow the code);
* then, with ``k = bisect_left(step_epochs, epoch)``: ``warmup_factors[-(k+1)]`` while
  ``k < len(warmup_factors)`` -- i.e. 0.1 up to epoch 10, 0.05 up to 20, 0.02 up to 30;
* after the last boundary: ``max(warmup_factors[0] * 0.98**epoch, 0.03)``, which is 0.03 (the
  official floor makes the LR *rise* from 2e-5 to 3e-5 at epoch 31; kept for fidelity).

"Epoch" is one pass over the training index; configs set ``steps_per_epoch`` so the same
boundaries rescale to other dataset sizes, as the maintainer advises (issue #18).
"""

from __future__ import annotations

import bisect
from typing import Sequence

import jax.numpy as jnp
import numpy as np
import optax


def official_lr_scale(epoch: int, warmup_factors: Sequence[float], step_epochs: Sequence[int],
                      floor: float = 0.03, decay: float = 0.98) -> float:
    """The official ``lr_foo(epoch)`` multiplier (a plain Python port, used to build the table)."""
    if epoch < len(warmup_factors):
        return float(warmup_factors[epoch])
    k = bisect.bisect_left(list(step_epochs), epoch)
    index = -(k + 1)
    if index < -len(warmup_factors):
        return max(float(warmup_factors[0]) * decay ** epoch, floor)
    return float(warmup_factors[index])


def epoch_lr_schedule(base_lr: float, steps_per_epoch: int, num_epochs: int,
                      warmup_factors: Sequence[float], step_epochs: Sequence[int],
                      floor: float = 0.03) -> optax.Schedule:
    """``step -> lr`` constant within each epoch of ``steps_per_epoch`` optimiser steps."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    table = np.array([base_lr * official_lr_scale(e, warmup_factors, step_epochs, floor)
                      for e in range(max(num_epochs, 1))], np.float32)
    table_j = jnp.asarray(table)

    def schedule(step):
        epoch = jnp.minimum(jnp.asarray(step) // steps_per_epoch, table.shape[0] - 1)
        return table_j[epoch]

    return schedule


def ast_lr_scale(step: int, steps_per_epoch: int, *, warmup_steps: int, warmup_every: int,
                 decay_start: int, decay_every: int, decay: float) -> float:
    """The official AST LR multiplier at optimiser ``step`` (a plain Python port, for tests).

    AST ``traintest.py``: while ``global_step <= warmup_steps`` the LR is set to
    ``global_step / warmup_steps * lr`` every ``warmup_every`` steps (so it is 0 for the first
    ``warmup_every`` steps); ``MultiStepLR(milestones=range(decay_start, 1000, decay_every),
    gamma=decay)`` is stepped after each epoch, epochs counted from 1.
    """
    epoch_index = step // steps_per_epoch  # epochs finished = scheduler.step() calls so far
    decays = 0 if epoch_index < decay_start else (epoch_index - decay_start) // decay_every + 1
    scale = float(decay) ** decays
    if warmup_steps and step <= warmup_steps:
        scale *= (step // warmup_every) * warmup_every / warmup_steps
    return scale


def ast_lr_schedule(base_lr: float, steps_per_epoch: int, *, warmup_steps: int, warmup_every: int,
                    decay_start: int, decay_every: int, decay: float) -> optax.Schedule:
    """``step -> lr`` of :func:`ast_lr_scale`, traceable."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")

    def schedule(step):
        step = jnp.asarray(step)
        epoch_index = step // steps_per_epoch
        decays = jnp.where(epoch_index < decay_start, 0, (epoch_index - decay_start) // decay_every + 1)
        scale = jnp.power(jnp.float32(decay), decays.astype(jnp.float32))
        if warmup_steps:
            warm = ((step // warmup_every) * warmup_every).astype(jnp.float32) / warmup_steps
            scale = jnp.where(step <= warmup_steps, scale * warm, scale)
        return base_lr * scale

    return schedule


def make_optimizer(optim_config, *, steps_per_epoch: int, num_epochs: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimiser and its schedule from ``config.optim``.

    ``name="adamw"`` (HTS-AT): AdamW(b1, b2, eps, weight_decay) after global-norm clipping; weight
    decay applies to every parameter, biases and norms included, as in the official code (its
    ``no_weight_decay`` lists are never wired in).
    ``name="adam_l2"`` (AST): ``torch.optim.Adam(weight_decay=...)``, i.e. the decay is added to the
    gradient *before* the moments (L2, not decoupled), no clipping unless ``grad_clip_norm`` is set.
    """
    o = optim_config
    name = o.get("name", "adamw")
    parts = []
    if o.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(o.grad_clip_norm))
    if name == "adamw":
        schedule = epoch_lr_schedule(o.base_lr, int(steps_per_epoch), int(num_epochs),
                                     tuple(o.warmup_factors), tuple(o.step_epochs), o.lr_floor)
        parts.append(optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay))
    elif name == "adam_l2":
        schedule = ast_lr_schedule(o.base_lr, int(steps_per_epoch), warmup_steps=int(o.warmup_steps),
                                   warmup_every=int(o.warmup_every), decay_start=int(o.decay_start),
                                   decay_every=int(o.decay_every), decay=float(o.decay))
        if o.weight_decay:
            parts.append(optax.add_decayed_weights(o.weight_decay))
        parts.append(optax.adam(schedule, b1=o.b1, b2=o.b2, eps=o.eps))
    else:
        raise ValueError(f"config.optim.name must be 'adamw' or 'adam_l2', got {name!r}")
    return optax.chain(*parts), schedule
