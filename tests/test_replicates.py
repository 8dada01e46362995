"""The replicate statistics against hand-computed values."""
import math

import pytest

from landmarks.evaluation.replicates import Replicates, compare, pooled_std


def test_mean_and_sample_std_by_hand():
    r = Replicates([0.01, 0.02, 0.03])
    assert r.mean == pytest.approx(0.02)
    assert r.std == pytest.approx(0.01)          # sqrt((1e-4 + 0 + 1e-4) / 2)
    assert r.format() == "2.00 \u00b1 1.00"
    assert Replicates([0.0375]).format() == "3.75" and Replicates([0.0375]).std == 0.0


def test_pooled_std_by_hand():
    a, b = Replicates([1.0, 3.0]), Replicates([2.0, 4.0, 6.0])   # variances 2 and 4
    assert pooled_std(a, b) == pytest.approx(math.sqrt((1 * 2 + 2 * 4) / 3))


def test_effect_needs_twice_the_pooled_std():
    a, b = [1.0, 2.0, 3.0], [3.0, 4.0, 5.0]       # s_p = 1, difference -2: exactly 2 s_p, not beyond
    result = compare(a, b)
    assert result.difference == pytest.approx(-2.0) and result.pooled_std == pytest.approx(1.0)
    assert not result.effect and result.verdict().startswith("within noise")
    assert compare(a, [3.1, 4.1, 5.1]).effect and compare(a, [3.1, 4.1, 5.1]).verdict().startswith("lower")
    # one seed on a side: never an effect, and the verdict says so with the difference in points
    single = compare([0.0450], [0.0436, 0.0497, 0.0487])
    assert not single.effect and single.verdict() == "one seed, not compared (-0.23 points)"
    assert compare([3.1, 4.1, 5.1], a).verdict(higher="worse").startswith("worse")


def test_one_seed_is_never_an_effect():
    assert not compare([0.03], [0.05]).effect
    assert not compare([0.03], [0.05, 0.051]).effect


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        Replicates([])
    with pytest.raises(ValueError, match="non-finite"):
        Replicates([0.1, float("nan")])


def test_mean_face_baseline_by_hand():
    """Two training shapes average to a known shape; its NME on a test face is computed by hand."""
    import torch
    from torch.utils.data import Dataset

    from landmarks.data.layouts import get_layout
    from landmarks.evaluation.loop import mean_face_baseline
    from landmarks.evaluation.metrics import nme

    layout = get_layout("300w")
    base = torch.rand(68, 2) * 60 + 30
    train = torch.stack([base - 2.0, base + 2.0])            # mean = base

    class Faces(Dataset):
        def __init__(self, shapes):
            self.shapes, self.layout = shapes, layout

        def __len__(self):
            return len(self.shapes)

        def __getitem__(self, i):
            return {"landmarks": self.shapes[i], "image": torch.zeros(3, 8, 8)}

    shifted = base + torch.tensor([3.0, 4.0])                # every point 5 px away from the mean
    result = mean_face_baseline(train, Faces(torch.stack([base, shifted])))
    iod = float(nme(base[None] + torch.tensor([5.0, 0.0]), base[None], layout)) / 5.0  # 1 / inter-ocular
    assert result["per_image"][0] == pytest.approx(0.0, abs=1e-6)
    assert result["per_image"][1] == pytest.approx(5.0 * iod, rel=1e-5)
    assert torch.allclose(result["predictions"][1], base)


def test_book_domains_render_and_differ_from_studio_as_declared():
    from landmarks.book.domains import BOOK_DOMAINS, book_domain
    from landmarks.data.synthetic import DOMAINS, SyntheticFaces

    assert book_domain("studio") == "studio"
    with pytest.raises(ValueError, match="unknown domain 'nowhere'"):
        book_domain("nowhere")
    assert BOOK_DOMAINS["occluded"].occluder_prob == 1.0 and DOMAINS["studio"].occluder_prob == 0.0
    faces = SyntheticFaces(book_domain("occluded"), 64, length=4, seed=0)
    hidden = sum(int((~faces[i]["visible"]).sum()) for i in range(len(faces)))
    assert faces[0]["domain"] == "occluded" and hidden > 0      # every face has an occluder: some points hidden
    for name, domain in BOOK_DOMAINS.items():
        assert domain.name == name and name not in DOMAINS      # declared, not added to the library's registry


def test_metric_rows_put_every_metric_beside_and_judge_one_column(tmp_path, monkeypatch):
    """Two toy experiments with known per-seed metrics: the cells are their mean +- sample std, a metric
    an experiment lacks is a dash, and only the compared column is judged against the reference."""
    import torch

    import landmarks.book.tables as tables
    from landmarks.detector import ModelSpec, build_detector
    from landmarks.profile import Profile
    from landmarks.store import Experiment, Store, Trained
    from landmarks.training.loop import History

    profile = Profile(name="tiny", image_size=32, width=0.25, train_images=4, test_images=2, epochs=1,
                      batch_size=2, seeds=(0, 1, 2))
    spec = ModelSpec("coordinate", num_points=5, width=0.25, image_size=32)
    scores = {"plain": {"nme": [0.040, 0.042, 0.044]},
              "staged": {"nme/stage0": [0.040, 0.042, 0.044], "nme": [0.030, 0.031, 0.032]}}

    def declare(name):
        def train(profile, seed, progress):
            trained = build_detector(spec)
            with torch.no_grad():
                trained.model.head.fc.bias[0] = seed
            return Trained(trained, History())

        def evaluate(detector, profile):
            seed = int(detector.model.head.fc.bias[0])
            return {key: values[seed] for key, values in scores[name].items()}

        return Experiment(name, "00", settings=lambda p: {}, train=train, evaluate=evaluate, keep="all",
                          build=lambda p: build_detector(spec))

    monkeypatch.setattr(tables, "STORE", Store(tmp_path, [declare("plain"), declare("staged")]))
    rows = tables.metric_rows({"A": "plain", "B": "staged"}, {"S_0 (%)": "nme/stage0", "last (%)": "nme"},
                              "last (%)", reference="A", baseline=0.09, profile=profile)
    assert [row["model"] for row in rows] == [tables.MEAN_FACE, "A", "B"]
    assert rows[0]["last (%)"] == "9.00" and rows[0]["S_0 (%)"] == "–"
    assert rows[1]["S_0 (%)"] == "–" and rows[1]["last (%)"] == "4.20 \u00b1 0.20" and rows[1]["seeds"] == 3
    assert rows[2]["S_0 (%)"] == "4.20 \u00b1 0.20" and rows[2]["last (%)"] == "3.10 \u00b1 0.10"
    # difference 1.1 points, pooled std sqrt((0.2^2 + 0.1^2) / 2) = 0.158 points: 7.0 s_p
    assert rows[2]["against A"] == "lower (7.0 s_p)" and rows[1]["against A"] is None
    with pytest.raises(ValueError, match="compared column"):
        tables.metric_rows({"A": "plain"}, {"last (%)": "nme"}, "first (%)", profile=profile)
