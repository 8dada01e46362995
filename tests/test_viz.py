"""Plot helpers return figures/axes with the right content (headless, Agg backend)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import re  # noqa: E402
import shutil  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from landmarks.plots import figures as viz  # noqa: E402
from landmarks.data.layouts import W300, custom_layout  # noqa: E402

H, W = 48, 64


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def scatters(ax) -> list[PathCollection]:
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def test_show_landmarks_points_and_extent():
    torch.manual_seed(0)
    target = torch.rand(68, 2) * torch.tensor([W, H])
    pred = target + 0.5
    ax = viz.show_landmarks(torch.rand(3, H, W), pred=pred, target=target, layout=W300, legend=True)
    (image,) = ax.get_images()
    assert tuple(image.get_extent()) == (0, W, H, 0)
    assert image.get_array().shape == (H, W, 3)
    points = scatters(ax)
    assert [len(c.get_offsets()) for c in points] == [68, 68]
    assert np.allclose(points[0].get_offsets(), target.numpy())  # ground truth first, unshifted
    assert np.allclose(points[1].get_offsets(), pred.numpy())
    assert points[0].get_label() == "ground truth" and points[1].get_label() == "prediction"
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert [len(c.get_segments()) for c in lines] == [len(W300.edges)] * 2
    assert ax.get_xlim() == (0, W) and ax.get_ylim() == (H, 0)


def test_show_landmarks_accepts_arrays_and_existing_axes():
    fig, ax = plt.subplots()
    image = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
    out = viz.show_landmarks(image, target=np.array([[1.0, 2.0], [3.0, 4.0]]), ax=ax)
    assert out is ax
    assert tuple(ax.get_images()[0].get_extent()) == (0, W, H, 0)
    assert ax.get_images()[0].get_array().max() <= 1.0
    assert [len(c.get_offsets()) for c in scatters(ax)] == [2]
    gray = viz.show_landmarks(torch.rand(1, H, W), pred=torch.zeros(3, 2))
    assert gray.get_images()[0].get_array().shape == (H, W)


def test_to_display_conversions():
    assert viz.to_display(torch.full((3, 4, 5), 2.0)).shape == (4, 5, 3)
    assert viz.to_display(torch.full((3, 4, 5), 2.0)).max() == 1.0
    assert viz.to_display(np.full((4, 5, 3), 255, np.uint8)).max() == 1.0


def test_show_layout_groups_and_numbers():
    shape = torch.rand(68, 2)
    ax = viz.show_layout(W300, shape)
    points = scatters(ax)
    assert len(points) == len(W300.groups)
    assert sum(len(c.get_offsets()) for c in points) == 68
    colours = {tuple(c.get_facecolor()[0]) for c in points}
    assert len(colours) == len(W300.groups)
    assert sorted(int(t.get_text()) for t in ax.texts) == list(range(68))
    assert ax.yaxis_inverted()
    ungrouped = viz.show_layout(custom_layout(5, groups={"eyes": (0, 1)}), torch.rand(5, 2))
    assert [len(c.get_offsets()) for c in scatters(ungrouped)] == [2, 3]
    with pytest.raises(ValueError):
        viz.show_layout(W300, torch.rand(10, 2))


def test_face_grid_from_samples_and_from_tensors():
    samples = [{"image": torch.rand(3, H, W), "landmarks": torch.rand(5, 2) * 40} for _ in range(5)]
    fig = viz.face_grid(samples, ncols=3)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 6
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == 5
    assert all(len(scatters(ax)[0].get_offsets()) == 5 for ax in shown)
    images, marks = torch.rand(3, 3, H, W), torch.rand(3, 68, 2) * 40
    fig = viz.face_grid(images, marks, preds=marks + 1, ncols=4, layout=W300, titles=["a", "b", "c"])
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    assert all(len(scatters(ax)) == 2 for ax in fig.axes)
    with pytest.raises(ValueError):
        viz.face_grid(images, marks[:2])


def test_heatmap_overlay_matches_image_extent():
    heat = torch.zeros(8, 8)
    heat[2, 5] = 1.0
    ax = viz.heatmap_overlay(torch.rand(3, H, W), heat, alpha=0.4)
    base, overlay = ax.get_images()
    assert tuple(base.get_extent()) == tuple(overlay.get_extent()) == (0, W, H, 0)
    assert overlay.get_alpha() == 0.4
    assert overlay.get_array().shape == (8, 8)
    stacked = viz.heatmap_overlay(torch.rand(3, H, W), torch.rand(68, 8, 8))
    assert stacked.get_images()[1].get_array().shape == (8, 8)


def test_plot_ced_lines():
    curves = {"good": torch.tensor([0.01, 0.02, 0.03, 0.2]), "bad": torch.tensor([0.05, 0.15, 0.3, 0.4])}
    ax = viz.plot_ced(curves, threshold=0.1)
    lines = ax.get_lines()
    assert len(lines) == 2
    for line, expected_end in zip(lines, (0.75, 0.25)):
        x, y = line.get_xdata(), line.get_ydata()
        assert np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0)
        assert x[0] == 0 and x[-1] == pytest.approx(10.0)  # percent
        assert y[-1] == pytest.approx(expected_end)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    # good: (0.09 + 0.08 + 0.07 + 0) / 4 / 0.1 = 0.6; bad: 0.05 / 4 / 0.1 = 0.125.
    assert labels == ["good (AUC@0.1 = 0.6000)", "bad (AUC@0.1 = 0.1250)"]
    fractions = viz.plot_ced({"good": curves["good"]}, percent=False)
    assert fractions.get_lines()[0].get_xdata()[-1] == pytest.approx(0.1)


def test_markdown_table_formats_floats_and_keeps_column_order():
    table = viz.markdown_table([{"name": "a", "nme": 0.12345, "n": 3}, {"name": "b", "nme": 1.0, "n": 4}],
                               digits=2)
    assert table.data.splitlines() == [
        "| name | nme | n |", "|---|---|---|", "| a | 0.12 | 3 |", "| b | 1.00 | 4 |"]
    with pytest.raises(ValueError):
        viz.markdown_table([])


def test_face_grid_titles_scale_with_the_panel_and_fit_it():
    images = torch.rand(3, 3, H, W)
    small = viz.face_grid(images, ncols=3, titles=["a", "b", "c"], panel_size=2.0)
    large = viz.face_grid(images, ncols=3, titles=["a", "b", "c"], panel_size=4.0)
    small_size, large_size = (fig.axes[0].title.get_fontsize() for fig in (small, large))
    assert large_size == pytest.approx(2 * small_size)
    # Readable once a wide grid is shrunk to a page: the title is about a tenth of the panel's side.
    assert small_size / (72 * 2.0) >= 0.08
    long = viz.face_grid(images, ncols=3, titles=["a title far too long for a panel this small", "b", "c"],
                         panel_size=2.0)
    renderer = long.canvas.get_renderer()
    assert long.axes[0].title.get_window_extent(renderer).width <= 0.95 * 2.0 * long.dpi + 1
    assert long.axes[0].title.get_fontsize() < long.axes[1].title.get_fontsize() == pytest.approx(small_size)
    assert viz.face_grid(images, titles=["a", "b", "c"], title_size=20).axes[0].title.get_fontsize() == 20
    with pytest.raises(ValueError):
        viz.face_grid(images, titles=["a", "b"])


def _explorer_frames():
    # three distinct tiny payloads; the explorer treats them as opaque PNG bytes
    return {("jaw (4)", "none"): b"first", ("chin (8)", "none"): b"second", ("jaw (4)", "3 x 3"): b"third"}


def test_the_explorer_embeds_every_frame_once_and_offers_each_choice():
    import base64
    import re

    from landmarks.plots.figures import explorer_html

    page = explorer_html(_explorer_frames(), ["landmark", "smoothing"], "Align Loss surfaces")
    for png in _explorer_frames().values():
        assert page.count(base64.b64encode(png).decode()) == (2 if png == b"first" else 1)  # the first is also shown
    lists = re.findall(r"<select[^>]*>(.*?)</select>", page)
    assert [re.findall(r'value="([^"]+)"', options) for options in lists] == [["jaw (4)", "chin (8)"], ["none", "3 x 3"]]
    assert re.findall(r'<option value="([^"]+)" selected>', page) == ["jaw (4)", "none"]
    assert "<figcaption>Align Loss surfaces</figcaption>" in page
    with pytest.raises(ValueError, match="at least one frame"):
        explorer_html({}, ["landmark"], "x")
    with pytest.raises(ValueError, match="2 components"):
        explorer_html({("a",): b"x"}, ["landmark", "smoothing"], "x")


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                    reason="needs headless Chromium (apt-get install chromium)")
def test_the_explorer_swaps_the_image_in_a_browser(tmp_path):
    import base64
    import subprocess

    from landmarks.plots.figures import explorer_html

    browser = next(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b))
    choose = ("<script>const lists = document.querySelectorAll('select');"
              "lists[0].value = 'chin (8)'; lists[0].dispatchEvent(new Event('change'));</script>")
    page = tmp_path / "explorer.html"
    page.write_text("<html><body>" + explorer_html(_explorer_frames(), ["landmark", "smoothing"], "caption")
                    + choose + "</body></html>")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    shown = re.search(r'<img id="[^"]+-image"[^>]*src="([^"]+)"', dom)
    assert shown and shown.group(1) == "data:image/png;base64," + base64.b64encode(b"second").decode()
