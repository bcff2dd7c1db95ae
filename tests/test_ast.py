"""AST (Audio Spectrogram Transformer): Kaldi fbank, parameter count, parity with an official-layout
reference, DeiT ImageNet / AudioSet initialisation, model directories and AudioTagger.

The reference model is transformers' ``ASTForAudioClassification`` with random weights: the same
architecture as the official ``ASTModel`` (timm DeiT backbone) with two differences that the
helpers undo -- transformers uses one ``layer_norm_eps`` (default 1e-12) everywhere, the official
model uses timm's 1e-6 in the backbone and ``nn.LayerNorm``'s 1e-5 in ``mlp_head``; and transformers
keeps separate q/k/v projections where timm has one fused ``qkv``. Its state dict is rewritten here
into the official ``module.v.* / module.mlp_head.*`` layout (independently of the converter's own
mapping) and saved with ``torch.save``, like the official release files.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from htsat_jax import AudioTagger, checkpoint  # noqa: E402
from htsat_jax.convert import ast as ast_convert
from htsat_jax.models import kaldi_fbank
from htsat_jax.convert import CheckpointError  # noqa: E402
from htsat_jax.models import ast as ast_lib  # noqa: E402

SR = 16000
# transformers warns that some of the 128 Kaldi mel filters are empty at a 512-point FFT (true of the
# official frontend too: the lowest filters are narrower than one FFT bin).
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter:UserWarning")


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Tones, a chirp, noise and a near-silent start (a log fbank with a wide dynamic range)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (200 + 800 * t) * t)
    x = x + 0.05 * rng.standard_normal(t.size) + 0.01  # a DC offset: removed per utterance and per frame
    x[: SR // 4] *= 1e-3
    return x.astype(np.float32)


# ----------------------------------------------------------------------------- (a) frontend


def test_kaldi_fbank_matches_transformers_feature_extractor():
    """Against ASTFeatureExtractor's numpy Kaldi path (torchaudio is not installed).

    transformers computes in float64 but stores the STFT as complex64; we compute in float32.
    Measured max |diff| of the raw log fbank: 4.3e-4 (float32, in a low-energy bin of the quiet
    start; log amplifies relative rounding there) and 6e-7 in float64 (the complex64 storage).
    Tolerances: 2e-3 (float32), 1e-5 (float64) on log energies spanning about -16 .. 8.
    """
    x = _signal(3.3)
    frames = kaldi_fbank.AST_FBANK.num_frames(x.size)
    assert frames == 1 + (x.size - 400) // 160 == 328
    fe = transformers.ASTFeatureExtractor(max_length=400, do_normalize=False)
    ref = fe(x, sampling_rate=SR, return_tensors="np")["input_values"][0]
    ours = np.asarray(kaldi_fbank.fbank(jnp.asarray(x[None])))[0]
    assert ours.shape == (frames, 128)
    np.testing.assert_allclose(ours, ref[:frames], atol=2e-3, rtol=0)
    assert np.all(ref[frames:] == 0)  # the extractor zero-pads the raw fbank, as the official dataloader
    with jax.enable_x64(True):
        ours64 = np.asarray(kaldi_fbank.fbank(jnp.asarray(x[None].astype(np.float64))))[0]
    np.testing.assert_allclose(ours64, ref[:frames], atol=1e-5, rtol=0)
    # Our filterbank equals transformers' kaldi-scale triangles (Nyquist column zero as in torchaudio).
    np.testing.assert_allclose(kaldi_fbank.mel_banks(kaldi_fbank.AST_FBANK), fe.mel_filters, atol=1e-7)


@pytest.mark.parametrize("target", [1024, 200])
def test_model_features_pad_crop_and_normalise_like_the_extractor(target):
    """Padding (raw zeros -> 0.467 after normalising) and cropping of the whole AST frontend."""
    x = _signal(3.3, seed=1)
    fe = transformers.ASTFeatureExtractor(max_length=target)
    ref = fe(x, sampling_rate=SR, return_tensors="np")["input_values"][0]
    cfg = ast_lib.ASTConfig(num_classes=3, input_tdim=target, **ast_lib.TINY)
    model = nnx.eval_shape(lambda: ast_lib.AST(cfg, rngs=nnx.Rngs(0)))
    ours = np.asarray(ast_lib.AST.features(model, jnp.asarray(x[None])))[0]
    np.testing.assert_allclose(ours, ref, atol=2e-3 / (2 * cfg.norm_std), rtol=0)
    if target > 328:
        np.testing.assert_allclose(ours[328:], cfg.pad_value, rtol=1e-6)
        assert abs(cfg.pad_value - 0.46702) < 1e-4


# ----------------------------------------------------------------------------- reference helpers


def hf_reference(num_labels=7, hidden=128, layers=2, heads=2, tdim=128, fstride=10, tstride=10, seed=0,
                 randomise=True):
    """A random transformers AST with the official LayerNorm epsilons."""
    torch.manual_seed(seed)
    cfg = transformers.ASTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                 intermediate_size=4 * hidden, max_length=tdim, frequency_stride=fstride,
                                 time_stride=tstride, num_labels=num_labels, layer_norm_eps=1e-6,
                                 hidden_act="gelu", attn_implementation="eager")
    model = transformers.ASTForAudioClassification(cfg).eval()
    model.classifier.layernorm.eps = 1e-5  # official mlp_head[0] is nn.LayerNorm(768): eps 1e-5
    if randomise:  # transformers zero-inits tokens/positions and LayerNorms to (1, 0): move every tensor
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.add_(torch.randn_like(p) * (0.2 if p.ndim == 1 or "embeddings" in name else 0.02))
    return model


def official_layout(hf_sd: dict, layers: int, *, module_prefix=True, deit_heads=True) -> dict:
    """transformers keys -> the official ASTModel state dict (DataParallel ``module.`` prefix)."""
    p = "audio_spectrogram_transformer."
    g = {k: v.detach().clone() for k, v in hf_sd.items()}
    sd = {"v.cls_token": g[p + "embeddings.cls_token"], "v.dist_token": g[p + "embeddings.distillation_token"],
          "v.pos_embed": g[p + "embeddings.position_embeddings"],
          "v.patch_embed.proj.weight": g[p + "embeddings.patch_embeddings.projection.weight"],
          "v.patch_embed.proj.bias": g[p + "embeddings.patch_embeddings.projection.bias"]}
    for i in range(layers):
        src, dst = f"{p}layers.{i}.", f"v.blocks.{i}."
        for kind in ("weight", "bias"):
            sd[dst + "norm1." + kind] = g[src + "layernorm_before." + kind]
            sd[dst + "attn.qkv." + kind] = torch.cat([g[src + f"attention.{n}_proj.{kind}"] for n in "qkv"])
            sd[dst + "attn.proj." + kind] = g[src + "attention.o_proj." + kind]
            sd[dst + "norm2." + kind] = g[src + "layernorm_after." + kind]
            sd[dst + "mlp.fc1." + kind] = g[src + "mlp.fc1." + kind]
            sd[dst + "mlp.fc2." + kind] = g[src + "mlp.fc2." + kind]
    dim = sd["v.cls_token"].shape[-1]
    sd.update({"v.norm.weight": g[p + "layernorm.weight"], "v.norm.bias": g[p + "layernorm.bias"]})
    if deit_heads:  # timm's ImageNet classifiers ride along in every official file, unused
        sd.update({"v.head.weight": torch.randn(1000, dim), "v.head.bias": torch.randn(1000),
                   "v.head_dist.weight": torch.randn(1000, dim), "v.head_dist.bias": torch.randn(1000)})
    sd.update({"mlp_head.0.weight": g["classifier.layernorm.weight"],
               "mlp_head.0.bias": g["classifier.layernorm.bias"],
               "mlp_head.1.weight": g["classifier.dense.weight"], "mlp_head.1.bias": g["classifier.dense.bias"]})
    return {("module." + k if module_prefix else k): v for k, v in sd.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(hf model, official .pth path, config, AST, report) for a 2-layer, dim-128, 128-frame AST.

    Two heads of 64 dims: the head count is not in the shapes, the converter assumes DeiT's 64-dim heads.
    """
    ref = hf_reference()
    path = tmp_path_factory.mktemp("ast") / "tiny_10_10_0.5000.pth"
    torch.save(official_layout(ref.state_dict(), 2), path)
    config, weights, report = ast_convert.load_ast_checkpoint(str(path), return_report=True)
    return ref, path, config, checkpoint.build_model(config, weights), report


def _forward_fbank(model, fb):
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, x: nnx.merge(graphdef, s).forward_fbank(x))(state, fb)


# ----------------------------------------------------------------------------- (b) parameter count


def test_parameter_count_of_the_paper_model():
    """527 classes, fstride = tstride = 10, 1024 frames: 12 x 101 patches.

    86,594,063 = patch conv 197,376 + CLS/DIST 1,536 + pos_embed 1,214 x 768 = 932,352
                 + 12 blocks x 7,087,872 + final norm 1,536 + mlp_head 1,536 + 768 x 527 + 527,
    exactly transformers' ASTForAudioClassification at the same sizes (counted below). The official
    ``ASTModel`` module reports 88,132,063 (``sum(p.numel() for p in model.parameters())``): it also
    holds timm's DeiT ImageNet classifiers ``v.head`` / ``v.head_dist`` (2 x 769,000), which its
    forward never uses and which this model leaves out. The paper's "87M" sits between the two.
    """
    config = ast_lib.ASTConfig()
    assert (config.f_dim, config.t_dim, config.num_tokens) == (12, 101, 1214)
    model = nnx.eval_shape(lambda: ast_lib.AST(config, rngs=nnx.Rngs(0)))
    assert ast_lib.count_parameters(model) == ast_lib.expected_parameter_count(config) == 86_594_063
    with torch.device("meta"):
        hf = transformers.ASTForAudioClassification(transformers.ASTConfig(num_labels=527))
    assert sum(p.numel() for p in hf.parameters()) == 86_594_063
    official = ast_convert.official_key_shapes(config, with_deit_heads=True)
    assert sum(math.prod(s) for s in official.values()) == ast_lib.official_parameter_count(config) == 88_132_063


# ----------------------------------------------------------------------------- (c) parity


def test_converted_official_checkpoint_reproduces_the_reference(tiny):
    ref, _, config, model, report = tiny
    assert (config.fstride, config.tstride, config.input_tdim, config.num_heads) == (10, 10, 128, 2)
    assert config.loss_type == "clip_bce" and config.num_classes == 7
    assert (config.norm_mean, config.norm_std) == (-6.845978, 5.5654526)  # 128 frames: official SCV2 recipe
    assert sorted(report.dropped) == sorted(ast_convert.UNUSED_OFFICIAL)
    assert len(report.converted) == len(ast_convert.official_key_shapes(config))
    fb = np.random.default_rng(0).standard_normal((3, 128, 128)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(fb)).logits.numpy()
    got = _forward_fbank(model, jnp.asarray(fb))
    # Measured max |diff| 3.6e-7 on logits up to 0.85; float32 tolerance 2e-5.
    np.testing.assert_allclose(np.asarray(got["logits"]), want, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got["clipwise_output"]), 1 / (1 + np.exp(-want)), atol=1e-5)
    assert got["latent_output"].shape == (3, 128)


def test_waveform_end_to_end_matches_feature_extractor_plus_reference(tiny):
    ref, _, config, model, _ = tiny
    x = np.stack([_signal(1.1, seed=s) for s in (2, 3)])  # 108 frames, zero-padded to 128
    fe = transformers.ASTFeatureExtractor(max_length=config.input_tdim, mean=config.norm_mean, std=config.norm_std)
    inputs = fe(list(x), sampling_rate=SR, return_tensors="pt")["input_values"]
    with torch.no_grad():
        want = ref(inputs).logits.numpy()
    got = jax.jit(lambda s, w: nnx.merge(*s)(w))(nnx.split(model), jnp.asarray(x))
    # Features differ from the extractor's by up to 3.5e-5 (the fbank rounding above, / 9.14);
    # logits measured 2.4e-7 apart; tolerance 5e-4.
    np.testing.assert_allclose(np.asarray(got["logits"]), want, atol=5e-4, rtol=0)


def test_base_size_parity():
    """Real ViT-B widths (768, 12 heads, 12 layers) on a 128-frame input (12 x 12 patches)."""
    ref = hf_reference(num_labels=35, hidden=768, layers=12, heads=12, tdim=128, seed=1)
    sd = {k: v.numpy() for k, v in official_layout(ref.state_dict(), 12, module_prefix=False).items()}
    config, weights = ast_convert.convert_ast_object(sd, "speechcommands_10_10_0.9812.pth")
    assert (config.embed_dim, config.depth, config.num_heads, config.input_tdim) == (768, 12, 12, 128)
    # Weights straight into an abstract model: checkpoint.build_model would first random-init 86M
    # parameters (about 10 s on 2 CPU cores) only to overwrite them.
    graphdef, state = nnx.split(nnx.eval_shape(lambda: ast_lib.AST(config, rngs=nnx.Rngs(0))))
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, checkpoint.normalise_keys(weights)))
    model = nnx.merge(graphdef, state)
    fb = np.random.default_rng(1).standard_normal((1, 128, 128)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(fb)).logits.numpy()
    got = np.asarray(_forward_fbank(model, jnp.asarray(fb))["logits"])
    # Measured max |diff| 2.1e-6 on logits up to 2.4 after 12 layers.
    np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-5)


def test_transformers_layouts_are_accepted(tiny, tmp_path):
    ref, _, config, model, _ = tiny
    ref.config.id2label = {i: f"sound_{i}" for i in range(7)}
    ref.save_pretrained(tmp_path / "hf")  # config.json + model.safetensors
    transformers.ASTFeatureExtractor(max_length=128, mean=-1.5, std=3.0).save_pretrained(tmp_path / "hf")
    tagger = AudioTagger.from_checkpoint(str(tmp_path / "hf"))
    assert tagger.module.NAME == "ast" and tagger.names[3] == "sound_3"
    assert (tagger.config.norm_mean, tagger.config.norm_std) == (-1.5, 3.0)  # from preprocessor_config.json
    torch.save(ref.state_dict(), tmp_path / "pytorch_model.bin")
    cfg_bin, w_bin = ast_convert.load_ast_checkpoint(str(tmp_path / "pytorch_model.bin"), input_tdim=128)
    assert cfg_bin == config
    # transformers 4.x / Hub names (query/key/value, intermediate/output.dense) map the same way.
    legacy = {}
    for k, v in ref.state_dict().items():
        for new, old in (("attention.q_proj", "attention.attention.query"),
                         ("attention.k_proj", "attention.attention.key"),
                         ("attention.v_proj", "attention.attention.value"),
                         ("attention.o_proj", "attention.output.dense"),
                         ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense"), ("layers.", "encoder.layer.")):
            k = k.replace(new, old)
        legacy[k] = v.numpy()
    cfg_old, w_old = ast_convert.convert_ast_object(legacy, "hub.bin")
    x = jnp.asarray(np.random.default_rng(2).standard_normal((1, 128, 128)).astype(np.float32))
    want = np.asarray(_forward_fbank(model, x)["logits"])
    for cfg, w in ((cfg_bin, w_bin), (cfg_old, w_old)):
        np.testing.assert_array_equal(np.asarray(_forward_fbank(checkpoint.build_model(cfg, w), x)["logits"]), want)
    np.testing.assert_array_equal(np.asarray(_forward_fbank(tagger.model, x)["logits"]), want)


def test_geometry_errors_name_the_key_and_shapes(tiny):
    _, path, _, _, _ = tiny
    with pytest.raises(CheckpointError, match=r"v\.pos_embed has shape \(1, 146, 128\).*input_tdim=1024"):
        ast_convert.load_ast_checkpoint(str(path), input_tdim=1024)
    with pytest.raises(CheckpointError, match=r"v\.pos_embed .* not a grid of f_dim=11"):
        ast_convert.load_ast_checkpoint(str(path), fstride=11)
    sd = {k: v for k, v in torch.load(path).items() if k != "module.v.blocks.1.mlp.fc2.bias"}
    with pytest.raises(CheckpointError, match=r"missing key\(s\): v\.blocks\.1\.mlp\.fc2\.bias"):
        ast_convert.convert_ast_object(sd, "cut.pth")


# ----------------------------------------------------------------------------- (d) ImageNet / AudioSet init


def official_pos_embed(pos: torch.Tensor, prefix: int, h: int, w: int, f_dim: int, t_dim: int) -> torch.Tensor:
    """The official ASTModel.__init__ position-embedding code, written out in torch."""
    d = pos.shape[2]
    new = pos[:, prefix:, :].detach().reshape(1, h * w, d).transpose(1, 2).reshape(1, d, h, w)
    if t_dim <= w:
        new = new[:, :, :, int(w / 2) - int(t_dim / 2): int(w / 2) - int(t_dim / 2) + t_dim]
    else:
        new = torch.nn.functional.interpolate(new, size=(h, t_dim), mode="bilinear")
    if f_dim <= h:
        new = new[:, :, int(h / 2) - int(f_dim / 2): int(h / 2) - int(f_dim / 2) + f_dim, :]
    else:
        new = torch.nn.functional.interpolate(new, size=(f_dim, t_dim), mode="bilinear")
    new = new.reshape(1, d, f_dim * t_dim).transpose(1, 2)
    return torch.cat([pos[:, :prefix, :].detach(), new], dim=1)


def fake_deit(dim=64, depth=2, grid=24, seed=0) -> dict:
    """Random timm ``vit_deit_*_distilled_patch16_384``-layout state dict (24 x 24 patch grid)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    sd = {"cls_token": r(1, 1, dim), "dist_token": r(1, 1, dim), "pos_embed": r(1, grid * grid + 2, dim),
          "patch_embed.proj.weight": r(dim, 3, 16, 16), "patch_embed.proj.bias": r(dim)}
    for i in range(depth):
        for name, shape in (("norm1", (dim,)), ("attn.qkv", (3 * dim, dim)), ("attn.proj", (dim, dim)),
                            ("norm2", (dim,)), ("mlp.fc1", (4 * dim, dim)), ("mlp.fc2", (dim, 4 * dim))):
            sd[f"blocks.{i}.{name}.weight"] = r(*shape)
            sd[f"blocks.{i}.{name}.bias"] = r(shape[0])
    sd.update({"norm.weight": r(dim), "norm.bias": r(dim), "head.weight": r(1000, dim), "head.bias": r(1000),
               "head_dist.weight": r(1000, dim), "head_dist.bias": r(1000)})
    return sd


@pytest.mark.parametrize("fstride,tstride,tdim", [(10, 10, 1024), (10, 10, 128), (4, 10, 200)])
def test_deit_import_matches_the_official_constructor(fstride, tstride, tdim, tmp_path):
    """1024 frames: time interpolated 24 -> 101, frequency cut to the centre 12 rows; 128 frames:
    both cut; fstride 4: frequency interpolated 24 -> 29."""
    deit = fake_deit()
    path = tmp_path / "deit_base_distilled_patch16_384.pth"
    torch.save({"model": deit}, path)  # the DeiT release container
    config = ast_lib.ASTConfig(num_classes=5, fstride=fstride, tstride=tstride, input_tdim=tdim, **ast_lib.TINY)
    init = nnx.to_pure_dict(nnx.state(ast_lib.AST(config, rngs=nnx.Rngs(0))))
    weights, report = ast_convert.load_pretrained(str(path), config, init)
    want_pos = official_pos_embed(deit["pos_embed"], 2, 24, 24, config.f_dim, config.t_dim).numpy()
    # Same float32 weights as torch; only the final multiply-add rounds differently: measured 2.4e-7.
    np.testing.assert_allclose(weights["pos_embed"], want_pos, atol=1e-6, rtol=0)
    want_patch = deit["patch_embed.proj.weight"].sum(dim=1).unsqueeze(1).numpy()  # official: sum over RGB
    np.testing.assert_allclose(weights["patch_embed"]["kernel"], want_patch.transpose(2, 3, 1, 0), rtol=1e-6)
    np.testing.assert_array_equal(weights["blocks"][1]["attn"]["qkv"]["kernel"],
                                  deit["blocks.1.attn.qkv.weight"].numpy().T)
    assert report.adapted == ["v.pos_embed", "v.patch_embed.proj.weight"]
    assert report.left_initial == ["mlp_head.0.weight", "mlp_head.0.bias", "mlp_head.1.weight", "mlp_head.1.bias"]
    assert sorted(report.skipped_source) == ["head.bias", "head.weight", "head_dist.bias", "head_dist.weight"]
    assert len(report.taken) + 2 + 4 == len(ast_convert.official_key_shapes(config))
    np.testing.assert_array_equal(weights["head"]["kernel"], init["head"]["kernel"])
    assert "AST init from" in report.summary()
    checkpoint.build_model(config, weights)  # the result is a complete, well-shaped model


def test_audioset_ast_as_init_for_a_longer_input(tiny):
    """The official audioset_pretrain path: a trained AST's 12 x 12 grid to a 512-frame model."""
    _, path, _, _, _ = tiny
    config = ast_lib.ASTConfig(num_classes=50, input_tdim=512, loss_type="clip_ce", embed_dim=128, depth=2,
                               num_heads=2)
    init = nnx.to_pure_dict(nnx.state(ast_lib.AST(config, rngs=nnx.Rngs(0))))
    weights, report = ast_convert.load_pretrained(str(path), config, init)
    pos = torch.load(path)["module.v.pos_embed"]
    np.testing.assert_allclose(weights["pos_embed"], official_pos_embed(pos, 2, 12, 12, 12, 50).numpy(), atol=1e-6)
    assert report.kind == "ast" and report.adapted == ["v.pos_embed"]
    assert set(report.left_initial) == {"mlp_head.0.weight", "mlp_head.0.bias", "mlp_head.1.weight", "mlp_head.1.bias"}


# ----------------------------------------------------------------------------- (e) model dir, AudioTagger


def test_model_dir_round_trip_and_tagging(tiny, tmp_path):
    import librosa

    _, path, config, model, _ = tiny
    out_dir = tmp_path / "ast_model"
    checkpoint.save_model(str(out_dir), model)
    meta = json.loads((out_dir / "config.json").read_text())
    assert meta["model"]["model_type"] == "ast"
    loaded, _ = checkpoint.load_model(str(out_dir))
    assert isinstance(loaded, ast_lib.AST) and loaded.config == config

    tagger = AudioTagger.from_checkpoint(str(out_dir), batch_size=2)
    from_pth = AudioTagger.from_checkpoint(str(path))  # official .pth detected by its keys
    assert from_pth.module.NAME == "ast" and tagger.sample_rate == 16000
    x16 = _signal(1.0, seed=4)
    out = tagger(x16, SR)
    assert set(out) == {"clipwise_output", "logits", "latent_output"} and out["clipwise_output"].shape == (1, 7)
    direct = loaded(jnp.asarray(x16[None]))
    np.testing.assert_allclose(out["logits"], np.asarray(direct["logits"]), atol=1e-5)
    np.testing.assert_allclose(from_pth(x16, SR)["logits"], out["logits"], atol=1e-5)
    x22 = librosa.resample(x16, orig_sr=SR, target_sr=22050, res_type="soxr_hq")
    np.testing.assert_allclose(tagger(x22, 22050)["clipwise_output"], out["clipwise_output"], atol=2e-2)
    assert tagger.top_tags(out["clipwise_output"], k=2)[0][0][0].startswith("class_")

    with pytest.raises(NotImplementedError, match="the ast model has no frame-wise output; AudioTagger.events needs one"):
        tagger.events(x16, SR)
    with pytest.raises(NotImplementedError, match="the ast model has no frame-wise output"):
        tagger.embed(x16, SR)
    from htsat_jax import AudioInputError

    with pytest.raises(AudioInputError, match="forward takes at most 1.29 s"):
        tagger(np.zeros(SR * 3, np.float32), SR)


def test_config_round_trip_and_training_forward():
    cfg = ast_lib.ASTConfig(num_classes=4, input_tdim=128, freqm=24, timem=40, **ast_lib.TINY)
    assert ast_lib.ASTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown ASTConfig fields"):
        ast_lib.ASTConfig.from_dict({"depths": 3})
    model = ast_lib.AST(cfg, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.stack([_signal(1.2, seed=s) for s in (5, 6)]))
    train = model(x, train=True, key=jax.random.key(0), mixup_lambda=jnp.array([0.3, 0.8]))
    assert np.all(np.isfinite(np.asarray(train["logits"])))
    fb = jnp.zeros((4, 128, 128))
    masked = np.asarray(ast_lib.spec_augment(fb, jax.random.key(1), 24, 40, cfg.pad_value))
    assert np.isclose(cfg.pad_value, 4.2677393 / (2 * 4.5689974))
    for b in range(4):  # one time stripe (< 40 frames) and one frequency stripe (< 24 bins) per example
        m = masked[b] != 0
        full_t, full_f = np.flatnonzero(m.all(axis=1)), np.flatnonzero(m.all(axis=0))
        assert len(full_t) < 40 and len(full_f) < 24
        assert np.all(np.diff(full_t) == 1) and np.all(np.diff(full_f) == 1)
        expected = np.zeros_like(m)
        expected[full_t, :] = True
        expected[:, full_f] = True
        np.testing.assert_array_equal(m, expected)
