"""Frame maps -> timed events, with the stretched-grid frame -> seconds mapping."""

import numpy as np
import pytest

from htsat_jax.inference.events import framewise_to_events
from htsat_jax.models.htsat import frame_seconds as step_seconds
from htsat_jax.models.htsat import HTSATConfig


def test_step_seconds_for_ten_seconds_is_not_ten_over_1024():
    assert step_seconds(HTSATConfig(), 320000) == pytest.approx(1000 / 1023 * 0.01)
    assert step_seconds(HTSATConfig(), 320000) != pytest.approx(10 / 1024, rel=1e-4)


def test_runs_become_events_with_onsets_offsets_and_scores():
    frames = np.zeros((1024, 3))
    frames[64:128, 0] = 0.9       # one event of class a
    frames[0:32, 2] = 0.6         # starts at 0
    frames[1000:, 2] = 0.8        # runs to the end, clipped at max_seconds
    frames[200:210, 1] = 0.4      # below the class threshold
    step = step_seconds(HTSATConfig(), 320000)
    events = framewise_to_events(frames, step, ["a", "b", "c"], threshold=np.array([0.5, 0.5, 0.5]),
                                 max_seconds=10.0)
    assert [(e.label, e.onset_s, e.offset_s) for e in events] == [
        ("c", 0.0, round(32 * step, 4)), ("a", round(64 * step, 4), round(128 * step, 4)),
        ("c", round(1000 * step, 4), 10.0)]
    assert events[1].score == pytest.approx(0.9)
    low = framewise_to_events(frames, step, ["a", "b", "c"], threshold=0.3)
    assert [(e.label, e.onset_s) for e in low if e.label == "b"] == [("b", round(200 * step, 4))]


def test_median_filter_size_in_frames_is_odd():
    from htsat_jax.inference.events import median_filter_size

    assert median_filter_size(0.5, 0.01) == 51 and median_filter_size(0.3, 0.01) == 31
    assert median_filter_size(0.04, 0.01) == 5 and median_filter_size(0, 0.01) == 1


def test_median_filter_removes_a_one_block_blip_and_fills_a_one_block_gap():
    from htsat_jax.inference.events import detect_events

    frames = np.zeros((1001, 2))
    frames[500:531, 0] = 0.9     # a lone 31-frame (one HTS-AT block) blip
    frames[100:400, 1] = 0.9     # an event with a one-block gap
    frames[240:271, 1] = 0.1
    raw = detect_events(frames, 0.01, ["a", "b"], median_filter_s=0)
    assert [(e.label, e.onset_s, e.offset_s) for e in raw] == [
        ("b", 1.0, 2.4), ("b", 2.71, 4.0), ("a", 5.0, 5.31)]
    smooth = detect_events(frames, 0.01, ["a", "b"], median_filter_s=0.7)
    assert [(e.label, e.onset_s, e.offset_s) for e in smooth] == [("b", 1.0, 4.0)]
