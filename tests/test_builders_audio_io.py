"""tfds_builders.audio_io: decoding, mono mixing, resampling, int16 rule, skip report."""

import json

import numpy as np
import pytest
import soundfile as sf

import fake_raw
from fake_raw import Tone
from tfds_builders import audio_io


def test_stereo_is_averaged_and_resampled(tmp_path):
    tone = fake_raw.write_tone(tmp_path / "s.wav", Tone(1000.0, (0.6, 0.2), 1.0, 44100))
    audio = audio_io.load_mono(tmp_path / "s.wav", 32000)
    assert audio.waveform.shape == (32000,) and audio.waveform.dtype == np.float32
    assert (audio.source_rate, audio.source_frames, audio.source_channels) == (44100, 44100, 2)
    assert audio.source_duration_s == pytest.approx(1.0)
    # Averaging gives 0.4; taking the left channel would give 0.6, summing 0.8.
    assert fake_raw.tone_amplitude(audio.waveform) == pytest.approx(0.4, rel=0.01)
    assert fake_raw.dominant_freq(audio.waveform, 32000) == pytest.approx(tone.freq, abs=1.0)


def test_upsampling_keeps_tone_and_length_is_ceil(tmp_path):
    fake_raw.write_tone(tmp_path / "a.wav", Tone(300.0, (0.5,), 0.2001, 8000))  # 1601 frames
    audio = audio_io.load_mono(tmp_path / "a.wav", 16000)
    assert audio.waveform.shape == (3202,)
    wave = audio_io.load_mono(tmp_path / "a.wav", 8000).waveform
    assert wave.shape == (1601,)  # same rate: no resampling
    x = audio.waveform
    assert fake_raw.dominant_freq(x, 16000) == pytest.approx(300.0, abs=16000 / len(x))


def test_native_rate_int16_round_trip_is_within_one_lsb(tmp_path):
    pcm = (np.arange(-3000, 3000, 7, dtype=np.int16) * 5).astype(np.int16)
    sf.write(tmp_path / "p.wav", pcm, 16000, subtype="PCM_16")
    out = audio_io.to_int16(audio_io.load_mono(tmp_path / "p.wav", 16000).waveform)
    assert np.max(np.abs(out.astype(int) - pcm.astype(int))) <= 1


def test_to_int16_rule_and_fit_length():
    x = np.array([-2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 3.0], np.float32)
    assert audio_io.to_int16(x).tolist() == [-32767, -32767, -16384, 0, 8192, 32767, 32767]
    assert audio_io.fit_length(np.ones(3), 5).tolist() == [1, 1, 1, 0, 0]
    assert audio_io.fit_length(np.arange(6), 4).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: fake_raw.write_corrupt(p), "unreadable audio"),
        (lambda p: fake_raw.write_truncated(p), "truncated"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: None, "missing file"),
    ],
)
def test_bad_files_raise_decode_error_with_reason(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(audio_io.AudioDecodeError) as info:
        audio_io.load_mono(path, 32000)
    assert info.value.reason.startswith(reason)
    assert info.value.path == str(path)


def test_truncated_flac_is_reported(tmp_path):
    fake_raw.write_tone(tmp_path / "x.flac", Tone(440.0, (0.5,), 1.0, 16000))
    data = (tmp_path / "x.flac").read_bytes()
    (tmp_path / "x.flac").write_bytes(data[: len(data) // 2])
    with pytest.raises(audio_io.AudioDecodeError, match="corrupt audio data|truncated"):
        audio_io.load_mono(tmp_path / "x.flac", 16000)


def test_container_without_decoder_is_a_decode_error(tmp_path):
    # Not a libsndfile format: goes through librosa/audioread, whose failure must still be a skip.
    fake_raw.write_corrupt(tmp_path / "clip.m4a")
    with pytest.raises(audio_io.AudioDecodeError, match="unreadable audio"):
        audio_io.load_mono(tmp_path / "clip.m4a", 32000)


def test_skip_report_json_round_trip(tmp_path):
    report = audio_io.SkipReport("toy", "train")
    report.add("a.wav", "missing file")
    report.add_error(audio_io.AudioDecodeError("/raw/b.wav", "truncated: header says more"), "b.wav")
    report.num_written = 7
    report.write_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["num_written"] == 7 and data["num_skipped"] == 2
    assert data["skipped"] == [
        {"path": "a.wav", "reason": "missing file"},
        {"path": "b.wav", "reason": "truncated: header says more"},
    ]
    assert data["skipped_by_reason"] == {"missing file": 1, "truncated": 1}
    assert audio_io.SkipReport.read_json(tmp_path / "r.json") == report
    assert report.summary() == "toy/train: 7 written, 2 skipped (missing file: 1, truncated: 1)"
