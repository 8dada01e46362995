import pytest
import torch

from landmarks.detector import Detector
from landmarks.evaluation.speed import SpeedRounds, head_models, images_per_second, speed_rounds, speed_table


def test_head_models_cover_table_8_and_decode():
    models = head_models(num_points=5, width=0.25)
    assert set(models) == {"bare trunk", "PIP Net (stride 32)", "Map Net (stride 4)", "Map Net (stride 2)",
                           "Map Net (stride 1)", "Coord Net"}
    images = torch.rand(2, 3, 64, 64)
    for name, detector in models.items():
        if detector.task is not None:
            assert detector.predict(images).shape == (2, 5, 2), name


def test_speed_table_reports_a_positive_rate_per_model_and_batch():
    models = {k: v for k, v in head_models(num_points=5, width=0.25).items() if "stride 1" not in k}
    rates = speed_table(models, batches=(1, 2), size=32, seconds=0.01, rounds=1)
    assert set(rates) == {(name, b) for name in models for b in (1, 2)}
    assert all(rate > 0 for rate in rates.values())


def test_images_per_second_counts_images_not_batches():
    calls = []

    class Counting(torch.nn.Module):
        def forward(self, images):
            calls.append(len(images))
            return {}

    rate = images_per_second(Detector(Counting(), None, layout=None), batch=4, size=8, seconds=0.0)
    assert calls == [4] * 4 and rate > 0  # one warm-up call, then at least three timed ones
    calls.clear()
    images_per_second(Detector(Counting(), None, layout=None), batch=2, size=8, seconds=0.0, warmup=False,
                      min_steps=1)
    assert calls == [2]


def test_paired_ratio_compares_models_within_each_round():
    # Round 3 ran during a burst of load that slowed only the trunk's measurement. Best rates would
    # compare the head's best round with the trunk's best round (10 / 40); the paired median does not.
    measured = SpeedRounds({("head", 1): [10.0, 5.0, 10.0], ("trunk", 1): [20.0, 10.0, 40.0]})
    assert measured.rounds == 3
    assert measured.ratios("trunk")[("head", 1)] == [0.5, 0.5, 0.25]
    assert measured.paired_ratio("trunk") == {("head", 1): 0.5, ("trunk", 1): 1.0}
    assert measured.best() == {("head", 1): 10.0, ("trunk", 1): 40.0}
    assert measured.median() == {("head", 1): 10.0, ("trunk", 1): 20.0}
    with pytest.raises(KeyError):
        measured.paired_ratio("missing")
    lines = measured.table("trunk").splitlines()
    assert lines[0].split() == ["model", "batch", "1", "x", "trunk", "range"]
    assert lines[2].split() == ["head", "10.0", "0.50", "0.25-0.50"]
    assert lines[3].split() == ["trunk", "20.0", "1.00", "1.00-1.00"]


def test_speed_rounds_time_every_model_once_per_round_in_rotating_order():
    calls = []

    class Named(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, images):
            calls.append(self.name)
            return {}

    detectors = {name: Detector(Named(name), None, layout=None) for name in "abc"}
    measured = speed_rounds(detectors, batches=(1,), size=8, seconds=0.0, rounds=3)
    assert all(len(values) == 3 and min(values) > 0 for values in measured.rates.values())
    runs = [name for k, name in enumerate(calls) if k == 0 or calls[k - 1] != name]  # one entry per measurement
    assert runs == ["a", "b", "c"] + ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # warm-ups, then 3 rounds
    assert calls[:3] == ["a", "b", "c"] and calls.count("a") == 1 + 3 * 3  # one warm-up, 3 steps per round
    assert set(speed_table(detectors, size=8, seconds=0.0, rounds=2, summary="median")) == {
        (name, 1) for name in "abc"}
    with pytest.raises(ValueError):
        speed_table(detectors, size=8, seconds=0.0, rounds=1, summary="mean")
