import torch

from landmarks.detector import Detector
from landmarks.evaluation.speed import head_models, images_per_second, speed_table


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
