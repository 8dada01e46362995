"""Recipes: a stored model is trained once, stored in half precision, reloaded, and refused when stale."""
import pytest
import torch
from torch import nn

from landmarks.profile import Profile
from landmarks.recipes import Recipe, StaleModel, cook, load_stored, round_to_half
from landmarks.training.loop import History

PROFILE = Profile(name="tiny", image_size=8, width=0.25, train_images=4, test_images=2, epochs=1, batch_size=2)


def toy_recipe(calls: list, scale: float = 1.0) -> Recipe:
    def build() -> nn.Module:
        return nn.Linear(3, 1)

    def train(model: nn.Module, progress: bool) -> History:
        calls.append("train")
        with torch.no_grad():
            model.weight.fill_(scale / 3)   # 1/3 is not a float16 number: rounding shows
            model.bias.fill_(0.1)
        history = History()
        history.append({"epoch": 1.0, "loss_total": 0.5})
        return history

    def evaluate(model: nn.Module) -> dict:
        with torch.no_grad():
            return {"output": float(model(torch.ones(1, 3)))}

    return Recipe("toy", request={"scale": scale}, build=build, train=train, evaluate=evaluate, chapter="00")


def test_cook_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDMARKS_CHECKPOINTS", str(tmp_path))
    calls = []
    model, record = cook(toy_recipe(calls), PROFILE, progress=False)
    assert calls == ["train"] and (tmp_path / "tiny" / "toy.pt").exists()
    third = torch.tensor(1 / 3).half().float()
    expected = float(3 * third + torch.tensor(0.1).half().float())   # evaluated on the rounded weights
    assert record["metrics"]["output"] == pytest.approx(expected, abs=1e-6)
    assert model.weight.dtype == torch.float32
    again, stored = cook(toy_recipe(calls), PROFILE, progress=False)
    assert calls == ["train"], "a matching stored model is loaded, not trained"
    torch.testing.assert_close(again.weight, model.weight, rtol=0, atol=0)
    assert stored["metrics"] == record["metrics"] and stored["history"][0]["loss_total"] == 0.5
    assert torch.load(tmp_path / "tiny" / "toy.pt", weights_only=True)["model"]["weight"].dtype == torch.float16


def test_stale_model_is_refused_by_load_and_retrained_by_cook(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDMARKS_CHECKPOINTS", str(tmp_path))
    calls = []
    cook(toy_recipe(calls), PROFILE, progress=False)
    with pytest.raises(StaleModel, match="scale"):
        load_stored(toy_recipe(calls, scale=2.0), PROFILE)
    model, record = cook(toy_recipe(calls, scale=2.0), PROFILE, progress=False)
    assert calls == ["train", "train"]
    assert float(model.weight[0, 0].detach()) == pytest.approx(2 / 3, abs=1e-3)
    with pytest.raises(FileNotFoundError):
        load_stored(toy_recipe(calls), Profile(name="other", image_size=8, width=0.25, train_images=4,
                                               test_images=2, epochs=1, batch_size=2))


def test_round_to_half_is_idempotent_and_keeps_integer_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    round_to_half(model)
    once = {k: v.clone() for k, v in model.state_dict().items()}
    round_to_half(model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, once[key], rtol=0, atol=0)
    assert model[1].num_batches_tracked.dtype == torch.long
    assert torch.equal(model[0].weight, model[0].weight.half().float())
