"""A third model, written outside the package: the model contract (``htsat_jax.models``) end to end.

Waveform ``(batch, samples)`` at 32 kHz -> log-mel (10 ms hop) -> BatchNorm over mel bins -> two
1-D convolutions over time -> per-frame logits, pooled over blocks of ``pool`` frames ->
``framewise_output (batch, frames // pool, classes)`` (sigmoid), ``clipwise_output`` (the mean of
the frame logits through the loss's activation) and ``latent_output`` (mean features).

Registered by the tests with ``htsat_jax.models.register("tiny_cnn", tiny_cnn)``; no library file
knows it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from htsat_jax.inference import windowing
from htsat_jax.models import base
from htsat_jax.models import frontend as frontend_lib

NAME = "tiny_cnn"


@dataclasses.dataclass(frozen=True)
class Config:
    num_classes: int = 10
    width: int = 16
    pool: int = 25  # frames per output step: 0.25 s
    loss_type: str = "clip_bce"
    frontend: frontend_lib.FrontendConfig = frontend_lib.AUDIOSET_FRONTEND
    model_name: ClassVar[str] = NAME

    def __post_init__(self):
        if isinstance(self.frontend, Mapping):
            object.__setattr__(self, "frontend", frontend_lib.FrontendConfig(**self.frontend))

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        return cls(**dict(d))


VARIANTS = {"base": {"width": 64}, "tiny": {"width": 16}}
HEAD = ("head",)


class Model(nnx.Module):
    def __init__(self, config: Config, *, rngs: nnx.Rngs, dtype: Any = None, param_dtype: Any = jnp.float32):
        self.config = config
        mels = config.frontend.n_mels
        self.bn0 = nnx.BatchNorm(mels, momentum=0.9, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = nnx.Conv(mels, config.width, (5,), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv2 = nnx.Conv(config.width, config.width, (5,), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.head = nnx.Linear(config.width, config.num_classes, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, waveform, *, train: bool = False, key=None, mixup_lambda=None):
        c = self.config
        x = frontend_lib.log_mel(waveform.astype(jnp.float32), c.frontend)  # (B, T, mels)
        x = self.bn0(x, use_running_average=not train)
        if mixup_lambda is not None:
            lam = mixup_lambda.astype(x.dtype)[:, None, None]
            x = lam * x + (1.0 - lam) * x[::-1]
        h = jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))
        steps = h.shape[1] // c.pool
        h = h[:, :steps * c.pool].reshape(h.shape[0], steps, c.pool, -1).mean(axis=2)  # (B, steps, width)
        logits = self.head(h).astype(jnp.float32)
        clip_logits = logits.mean(axis=1)
        clipwise = jax.nn.sigmoid(clip_logits) if c.loss_type == "clip_bce" else clip_logits
        return {"clipwise_output": clipwise, "framewise_output": jax.nn.sigmoid(logits),
                "latent_output": h.mean(axis=1).astype(jnp.float32), "frame_features": h.astype(jnp.float32)}


def frame_seconds(config: Config, num_samples: int) -> float:
    return config.pool * config.frontend.hop_length / config.sample_rate


def input_limits(config: Config) -> tuple[int, None]:
    return config.pool * config.frontend.hop_length, None


def infer(model: Model, waveform):
    return model(waveform)


def windows(config: Config, window_s: float = 10.0, hop_s: float = 5.0):
    return windowing.PlainWindows(infer, sample_rate=config.sample_rate, window_s=window_s,
                                  hop_s=hop_s, seconds_per_step=frame_seconds(config, 0),
                                  min_samples=input_limits(config)[0])


can_load = base.no_foreign_files
load = base.load_unsupported


def init_from(path: str, config: Config, fresh, *, seed: int = 0):
    weights, report = base.init_from_model_dir(path, config, fresh, arch_fields=("width", "pool", "frontend"),
                                               head=HEAD)
    return weights, report.summary()


def export_forward(model: Model, num_samples: int):
    return None
