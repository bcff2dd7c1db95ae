"""A PyTorch HTS-AT for side-by-side benchmarks (``tools/bench_train.py``, ``tools/bench_infer.py``).

The official HTS-AT repository is not a package (and its ``timm`` import pulls torchvision), so
the reference is assembled from maintained parts that compute the same thing:

* frontend: ``torch.stft`` (periodic Hann, n_fft 1024, hop 320, centre + reflect padding), power,
  the same librosa Slaney mel matrix as ours, ``10 log10(max(., 1e-10))``. The official code runs
  the DFT as a conv1d (torchlibrosa); ``torch.stft`` is the faster of the two, so the reference
  is, if anything, favoured;
* bn0, the bicubic time stretch to 1024 frames, the 256 x 256 image, the Swin backbone (embed 96,
  depths 2-2-6-2, heads 4-8-16-32, window 8) and the final LayerNorm: transformers'
  ``ClapAudioModel`` audio tower, which is HTS-AT's backbone (its ``last_hidden_state`` is exactly
  the token-semantic head's input, ``(batch, 768, 2, 32)``);
* the token-semantic head (``Conv2d(768, classes, (2, 3), padding=(0, 1))``, sigmoid, mean over
  time, frame maps repeated to 1024 frames) written here as the official ``forward_features`` does;
* training only: SpecAugment (2 time stripes of up to 64 frames, 2 frequency stripes of up to 8
  bins, as torchlibrosa) and mixup of each clip with the batch reversed, as the official trainer.

Used only by the benchmarks (needs ``requirements-torch.txt``); nothing in ``htsat_jax`` imports it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TorchHTSAT(nn.Module):
    """Waveform ``(batch, samples)`` at 32 kHz -> ``clipwise (batch, classes)``, ``framewise (batch, 1024, classes)``."""

    def __init__(self, num_classes: int = 527, drop_path_rate: float = 0.1):
        super().__init__()
        from transformers import ClapAudioConfig, ClapAudioModel

        from htsat_jax.models import frontend

        # HTS-AT's recipe: drop-path 0.1, no dropout (the CLAP defaults differ).
        cfg = ClapAudioConfig(enable_fusion=False, drop_path_rate=drop_path_rate, hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0)
        self.backbone = ClapAudioModel(cfg)
        self.n_fft, self.hop = 1024, 320
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True))
        self.register_buffer("mel", torch.from_numpy(frontend.mel_filterbank(frontend.AUDIOSET_FRONTEND)))
        features = cfg.hidden_size  # already the last stage's width (768)
        freq_bins = cfg.spec_size // 2 ** (len(cfg.depths) - 1) // cfg.patch_stride[0] // (cfg.spec_size // cfg.num_mel_bins)
        self.head = nn.Conv2d(features, num_classes, (freq_bins, 3), padding=(0, 1))
        self.target_frames = 1024

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` -> dB log-mel ``(batch, frames, 64)``."""
        spec = torch.stft(waveform, self.n_fft, self.hop, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2  # (batch, bins, frames)
        return 10.0 * torch.log10(torch.clamp(power.transpose(1, 2) @ self.mel, min=1e-10))

    @staticmethod
    def spec_augment(x: torch.Tensor) -> torch.Tensor:
        """Zero 2 random time stripes (width < 64) and 2 frequency stripes (width < 8) per clip."""
        b, t, f = x.shape
        keep = torch.ones_like(x)
        for axis, size, width in ((1, t, 64), (2, f, 8)):
            for _ in range(2):
                w = torch.randint(0, width, (b,))
                start = (torch.rand(b) * (size - w)).long()
                pos = torch.arange(size)[None]
                stripe = (pos >= start[:, None]) & (pos < (start + w)[:, None])  # (b, size)
                keep = keep * (~stripe).float().unsqueeze(2 if axis == 1 else 1)
        return x * keep

    def forward(self, waveform: torch.Tensor, train: bool = False,
                mixup_lambda: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = self.log_mel(waveform)
        if train:
            x = self.spec_augment(x)
            if mixup_lambda is not None:
                lam = mixup_lambda[:, None, None]
                x = lam * x + (1 - lam) * x.flip(0)
        # ClapAudioModel takes (batch, 1, frames, mels) and applies bn0, the stretch, Swin and the final norm.
        hidden = self.backbone(input_features=x[:, None]).last_hidden_state  # (batch, 768, 2, 32)
        logits = torch.flatten(self.head(hidden), 2)  # (batch, classes, 32)
        framewise = torch.sigmoid(logits).permute(0, 2, 1).repeat_interleave(
            self.target_frames // logits.shape[-1], dim=1)
        return {"clipwise_output": torch.sigmoid(logits.mean(-1)), "framewise_output": framewise}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def make_train_step(model: TorchHTSAT, lr: float = 1e-3):
    """One AdamW step on clip BCE with mixup (alpha 0.5), gradient clipping, as the official recipe."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    rng = np.random.default_rng(0)

    def step(waveform: torch.Tensor, target: torch.Tensor) -> float:
        model.train()
        lam = torch.from_numpy(rng.beta(0.5, 0.5, waveform.shape[0]).astype(np.float32))
        out = model(waveform, train=True, mixup_lambda=lam)
        mixed = lam[:, None] * target + (1 - lam[:, None]) * target.flip(0)
        loss = nn.functional.binary_cross_entropy(out["clipwise_output"], mixed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step
