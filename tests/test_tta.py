"""Test-time augmentation: transforms, merge modes, batched == loop, dense inversion, config checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scribbles.core import ConfigError, ModelSpec, create, default_registry, resolve
from scribbles.core.config import parse_config
from scribbles.core.evaluation import (
    IDENTITY,
    PROBE_MIN_BLOCKS,
    clear_mode_cache,
    compose_views,
    evaluate,
    evaluate_groups,
    merge_probabilities,
    predict_views,
    transform_labels,
)
from torch import nn

IMAGE_TRANSFORMS = [
    ("hflip", {}),
    ("vflip", {}),
    ("rot90", {"k": [1, 2, 3]}),
    ("shift", {"dx": [-1, 1], "dy": [0, 2], "fill": "edge"}),
    ("shift", {"dx": [-2, 1], "dy": [1], "fill": "zero"}),
    ("crop", {"pad": 1}),
    ("noise", {"std": 0.1, "copies": 2, "seed": 3}),
]
SEQUENCE_TRANSFORMS = [
    ("time_shift", {"shifts": [-2, 3]}),
    ("scale", {"factors": [0.8, 1.25]}),
    ("jitter", {"std": 0.1, "copies": 2}),
    ("reverse", {}),
]


def views_of(*transforms: tuple[str, dict]) -> list:
    return [view for name, params in transforms for view in create("tta", name, **params).views()]


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in module.parameters():
        nn.init.normal_(p, std=0.5)
    return module


# ---------------------------------------------------------------- merge modes


def test_merge_modes_match_hand_computed_values() -> None:
    """mean, gmean (renormalised), max (renormalised) and fastai's beta blend, by hand."""
    probs = torch.tensor([[[0.6, 0.4]], [[0.2, 0.8]], [[0.5, 0.5]]])  # (views, rows, classes)
    torch.testing.assert_close(merge_probabilities(probs, "mean"), torch.tensor([[1.3 / 3, 1.7 / 3]]))
    g = np.array([(0.6 * 0.2 * 0.5) ** (1 / 3), (0.4 * 0.8 * 0.5) ** (1 / 3)])
    torch.testing.assert_close(merge_probabilities(probs, "gmean"), torch.from_numpy((g / g.sum())[None]).float())
    torch.testing.assert_close(merge_probabilities(probs, "max"), torch.tensor([[0.6 / 1.4, 0.8 / 1.4]]))
    # beta: beta * plain + (1 - beta) * mean(augmented), plain being view 0.
    expected = 0.25 * np.array([0.6, 0.4]) + 0.75 * np.array([0.35, 0.65])
    torch.testing.assert_close(merge_probabilities(probs, "beta", beta=0.25),
                               torch.from_numpy(expected[None]).float())
    torch.testing.assert_close(merge_probabilities(probs, "beta", beta=1.0), probs[0])
    torch.testing.assert_close(merge_probabilities(probs[:1], "beta", beta=0.0), probs[0])


def test_merges_of_logit_like_extremes_stay_finite() -> None:
    """Zero probabilities (where ttach's tsharpen on logits gives NaN) stay finite and normalised."""
    probs = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]])
    for how in ("mean", "gmean", "max", "beta"):
        merged = merge_probabilities(probs, how)
        assert torch.isfinite(merged).all(), how
        torch.testing.assert_close(merged.sum(-1), torch.ones(1))
    with pytest.raises(ValueError, match="unknown merge 'vote'"):
        merge_probabilities(probs, "vote")


@pytest.mark.parametrize("how", ["mean", "gmean", "max", "beta"])
def test_permuting_views_changes_nothing(how: str) -> None:
    """Every merge is symmetric in the augmented views; end to end, reordering transforms changes nothing."""
    probs = torch.rand(6, 5, 4).softmax(-1)
    for order in itertools.islice(itertools.permutations(range(1, 6)), 0, 120, 17):
        permuted = probs[[0, *order]]
        torch.testing.assert_close(merge_probabilities(permuted, how), merge_probabilities(probs, how),
                                   rtol=0, atol=1e-7)
    model = seeded(create("model", "cnn", channels=[4]).build(ModelSpec("image", (1, 8, 8), 3)))
    x = torch.randn(20, 1, 8, 8)
    views = views_of(*IMAGE_TRANSFORMS)
    _, forward = evaluate(model, x, views, how, chunk=7)
    _, backward = evaluate(model, x, views[::-1], how, chunk=7)
    np.testing.assert_allclose(backward, forward, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- the evaluator


def _cases() -> list[tuple[str, nn.Module, torch.Tensor, list]]:
    mlp = create("model", "mlp", hidden=[16]).build(ModelSpec("tabular", (6,), 3))
    cnn = create("model", "cnn", channels=[4, 8]).build(ModelSpec("image", (1, 8, 8), 4))
    gru = create("model", "gru", hidden=8).build(ModelSpec("sequence", (12, 3), 4))
    return [
        ("mlp", seeded(mlp), torch.randn(23, 6), views_of(("noise", {"copies": 3}))),
        ("cnn", seeded(cnn), torch.randn(23, 1, 8, 8), views_of(*IMAGE_TRANSFORMS)),
        ("gru", seeded(gru), torch.randn(23, 12, 3), views_of(*SEQUENCE_TRANSFORMS)),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_batched_equals_loop(case) -> None:
    """Stacking the views into one pass gives the predictions of one pass per view (1e-6)."""
    _, model, x, views = case
    batched = predict_views(model, x, [IDENTITY, *views], chunk=5, mode="batched")
    loop = predict_views(model, x, [IDENTITY, *views], chunk=5, mode="loop")
    assert batched.mode == "batched" and loop.mode == "loop"
    assert batched.probs.shape == (1 + len(views), 23, model(x[:1]).shape[-1])
    np.testing.assert_allclose(batched.probs.numpy(), loop.probs.numpy(), rtol=0, atol=1e-6)
    # The chunk size does not change what is predicted (noise is drawn per block, so leave it out).
    plain_views = [v for v in views if not v.name.startswith(("noise", "jitter"))]
    small = predict_views(model, x, [IDENTITY, *plain_views], chunk=5, mode="batched").probs
    whole = predict_views(model, x, [IDENTITY, *plain_views], chunk=64, mode="loop").probs
    np.testing.assert_allclose(small.numpy(), whole.numpy(), rtol=0, atol=1e-6)


def test_auto_probes_both_modes_and_keeps_its_choice() -> None:
    """auto times both modes on the first blocks, picks one, and reuses the choice for the same setup."""
    clear_mode_cache()
    model = seeded(create("model", "mlp", hidden=[8]).build(ModelSpec("tabular", (4,), 2)))
    x = torch.randn(4 * PROBE_MIN_BLOCKS, 4)
    views = [IDENTITY, *views_of(("noise", {"copies": 3}))]
    first = predict_views(model, x, views, chunk=4, mode="auto")
    assert first.mode in ("batched", "loop") and set(first.timings) == {"batched", "loop"}
    again = predict_views(model, x, views, chunk=4, mode="auto")
    assert again.mode == first.mode and again.timings == {}  # cached: no second probe
    reference = predict_views(model, x, views, chunk=4, mode="loop").probs
    np.testing.assert_allclose(first.probs.numpy(), reference.numpy(), rtol=0, atol=1e-6)
    clear_mode_cache()
    few = predict_views(model, x[:8], views, chunk=4, mode="auto")
    assert few.mode == "batched" and few.timings == {}  # too few blocks to be worth probing
    clear_mode_cache()


def test_evaluator_uses_eval_mode_and_no_grad_and_restores_the_model() -> None:
    """Dropout is off during evaluation (repeatable), no graph is built, the model's mode comes back."""
    model = create("model", "mlp", hidden=[32], dropout=0.5).build(ModelSpec("tabular", (4,), 3))
    model.train()
    x = torch.randn(10, 4)
    first = predict_views(model, x, [IDENTITY], mode="loop").probs
    second = predict_views(model, x, [IDENTITY], mode="batched").probs
    assert model.training
    assert not first.requires_grad
    torch.testing.assert_close(first, second, rtol=0, atol=1e-6)


def test_no_views_means_tta_is_plain_exactly() -> None:
    """With no transforms the TTA prediction is the plain one, bit for bit, and no breakdown."""
    model = seeded(create("model", "gru", hidden=8).build(ModelSpec("sequence", (12, 3), 4)))
    x = torch.randn(9, 12, 3)
    result = evaluate_groups(model, x, [], "gmean", chunk=4)
    np.testing.assert_array_equal(result.plain, result.tta)
    assert result.by_transform == {}


def test_breakdown_merges_each_transform_alone() -> None:
    """by_transform[label] is the identity merged with that transform's views only."""
    model = seeded(create("model", "cnn", channels=[4]).build(ModelSpec("image", (1, 8, 8), 3)))
    x = torch.randn(11, 1, 8, 8)
    groups = [("hflip", views_of(("hflip", {}))), ("shift", views_of(("shift", {"dx": [1], "dy": [0]})))]
    result = evaluate_groups(model, x, groups, "mean", chunk=4, mode="loop")
    for label, views in groups:
        _, alone = evaluate(model, x, views, "mean", chunk=4, mode="loop")
        np.testing.assert_allclose(result.by_transform[label], alone, rtol=0, atol=1e-6)
    _, together = evaluate(model, x, [v for _, g in groups for v in g], "mean", chunk=4, mode="loop")
    np.testing.assert_allclose(result.tta, together, rtol=0, atol=1e-6)
    assert transform_labels(["shift", "hflip", "shift", "gain", "a-b"]) == ["shift", "hflip", "shift_2",
                                                                             "gain_2", "a_b"]


# ---------------------------------------------------------------- dense outputs


def d4_kernel(channels_in: int, channels_out: int) -> torch.Tensor:
    """A 3x3 kernel unchanged by flips and quarter turns (centre, edge and corner weights)."""
    torch.manual_seed(1)
    centre, edge, corner = torch.randn(3, channels_out, channels_in, 1, 1)
    kernel = corner.expand(-1, -1, 3, 3).clone()
    kernel[:, :, 1, :] = edge[..., 0]
    kernel[:, :, :, 1] = edge[..., 0]
    kernel[:, :, 1, 1] = centre[..., 0, 0]
    return kernel


class SymmetricSegmenter(nn.Module):
    """Per-pixel class scores (rows, classes, h, w) from a D4-symmetric conv with circular padding.

    Equivariant to flips, quarter turns and wrapped shifts: transforming the input transforms the
    output the same way.
    """

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, classes, 3, padding=1, padding_mode="circular", bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(d4_kernel(2, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SymmetricTagger(nn.Module):
    """Per-step class scores (rows, steps, classes) from a symmetric, circular 1-d conv over time."""

    def __init__(self, channels: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, classes, 3, padding=1, padding_mode="circular", bias=False)
        with torch.no_grad():
            side = torch.randn(classes, channels, 1)
            self.conv.weight.copy_(torch.cat([side, torch.randn(classes, channels, 1), side], dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


@pytest.mark.parametrize("how", ["mean", "gmean", "max", "beta"])
@pytest.mark.parametrize("mode", ["batched", "loop"])
def test_invert_then_merge_on_dense_outputs_gives_the_plain_prediction(how: str, mode: str) -> None:
    """For an equivariant model, inverting each view's dense output makes every view agree with plain."""
    torch.manual_seed(0)
    image_views = views_of(("hflip", {}), ("vflip", {}), ("rot90", {}), ("shift", {"fill": "wrap"}))
    image_views += compose_views([views_of(("shift", {"dx": [2], "dy": [0], "fill": "wrap"})),
                                  views_of(("hflip", {}), ("rot90", {"k": [1]}))])
    x = torch.randn(6, 2, 8, 8)
    model = SymmetricSegmenter()
    plain, tta = evaluate(model, x, image_views, how, chunk=4, mode=mode, class_dim=1)
    assert tta.shape == (6, 3, 8, 8)
    np.testing.assert_allclose(tta, plain, rtol=0, atol=1e-6)

    sequence_views = views_of(("time_shift", {"shifts": [-3, 1, 5], "fill": "wrap"}), ("reverse", {}))
    s = torch.randn(5, 16, 3)
    plain, tta = evaluate(SymmetricTagger(), s, sequence_views, how, chunk=2, mode=mode)
    assert tta.shape == (5, 16, 4)
    np.testing.assert_allclose(tta, plain, rtol=0, atol=1e-6)


def test_without_invert_dense_views_would_disagree() -> None:
    """The check above has teeth: skipping the inverse leaves flipped maps that differ from plain."""
    model = SymmetricSegmenter()
    x = torch.randn(2, 2, 8, 8)
    (flip,) = views_of(("hflip", {}))
    with torch.no_grad():
        assert not torch.allclose(model(flip.apply(x)), model(x), atol=1e-3)
        torch.testing.assert_close(flip.invert(model(flip.apply(x))), model(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- transforms


def test_image_transforms_move_pixels_as_named() -> None:
    """vflip, rot90, shift (edge/zero/wrap) and pad-and-crop on a 3x3 ramp."""
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    grid = lambda t: t.reshape(3, 3).tolist()  # noqa: E731
    (vflip,) = views_of(("vflip", {}))
    assert grid(vflip.apply(x)) == [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
    (rot,) = views_of(("rot90", {"k": [1]}))
    assert grid(rot.apply(x)) == [[2, 5, 8], [1, 4, 7], [0, 3, 6]]
    (edge,) = views_of(("shift", {"dx": [1], "dy": [0]}))
    assert grid(edge.apply(x)) == [[0, 0, 1], [3, 3, 4], [6, 6, 7]]
    (zero,) = views_of(("shift", {"dx": [0], "dy": [-1], "fill": "zero"}))
    assert grid(zero.apply(x)) == [[3, 4, 5], [6, 7, 8], [0, 0, 0]]
    (wrap,) = views_of(("shift", {"dx": [-1], "dy": [0], "fill": "wrap"}))
    assert grid(wrap.apply(x)) == [[1, 2, 0], [4, 5, 3], [7, 8, 6]]
    top_left, bottom_right = views_of(("crop", {"positions": ["top_left", "bottom_right"], "mode": "reflect"}))
    assert grid(top_left.apply(x)) == [[4, 3, 4], [1, 0, 1], [4, 3, 4]]
    assert grid(bottom_right.apply(x)) == [[4, 5, 4], [7, 8, 7], [4, 5, 4]]
    assert len(views_of(("shift", {}))) == 8  # dy x dx = 3 x 3 offsets, the identity left out


def test_sequence_transforms_act_along_time() -> None:
    """time_shift, scale and reverse act on (rows, steps, channels)."""
    s = torch.arange(5.0).reshape(1, 5, 1)
    (right,) = views_of(("time_shift", {"shifts": [2]}))
    assert right.apply(s).flatten().tolist() == [0.0, 0.0, 0.0, 1.0, 2.0]
    (double,) = views_of(("scale", {"factors": [2.0]}))
    assert double.apply(s).flatten().tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
    (back,) = views_of(("reverse", {}))
    assert back.apply(s).flatten().tolist() == [4.0, 3.0, 2.0, 1.0, 0.0]


def test_noise_is_seeded_and_differs_per_copy() -> None:
    """noise and jitter repeat for a seed, differ between copies and seeds, and keep the scale asked."""
    x = torch.zeros(200, 16)
    a0, a1 = views_of(("noise", {"std": 0.5, "copies": 2, "seed": 1}))
    b0, _ = views_of(("noise", {"std": 0.5, "copies": 2, "seed": 1}))
    c0, _ = views_of(("noise", {"std": 0.5, "copies": 2, "seed": 2}))
    torch.testing.assert_close(a0.apply(x), b0.apply(x))
    assert not torch.equal(a0.apply(x), a1.apply(x)) and not torch.equal(a0.apply(x), c0.apply(x))
    assert float(a0.apply(x).std()) == pytest.approx(0.5, rel=0.05)
    (jitter,) = views_of(("jitter", {"std": 0.2, "copies": 1}))
    assert jitter.apply(torch.zeros(3, 10, 2)).shape == (3, 10, 2)


def test_invertible_views_round_trip() -> None:
    """invert(apply(x)) == x for flips, quarter turns, wrapped shifts and reversal."""
    x = torch.randn(2, 3, 6, 6)
    for view in views_of(("hflip", {}), ("vflip", {}), ("rot90", {}), ("shift", {"fill": "wrap"})):
        torch.testing.assert_close(view.invert(view.apply(x)), x, rtol=0, atol=0)
    s = torch.randn(2, 9, 3)
    for view in views_of(("time_shift", {"shifts": [-4, 2], "fill": "wrap"}), ("reverse", {})):
        torch.testing.assert_close(view.invert(view.apply(s)), s, rtol=0, atol=0)


def test_compose_is_the_product_with_each_factor_optional() -> None:
    """shifts [-2, 2] x hflip: 3 x 2 - 1 = 5 views, applied in order and inverted in reverse."""
    shifts = views_of(("shift", {"dx": [-2, 2], "dy": [0], "fill": "wrap"}))
    views = compose_views([shifts, views_of(("hflip", {}))])
    assert [v.name for v in views] == ["hflip", "shift(0,-2)", "shift(0,-2)+hflip", "shift(0,2)",
                                       "shift(0,2)+hflip"]
    x = torch.arange(5.0).reshape(1, 1, 1, 5)
    assert views[2].apply(x).flatten().tolist() == [1.0, 0.0, 4.0, 3.0, 2.0]  # shift left 2, then flip
    torch.testing.assert_close(views[2].invert(views[2].apply(x)), x)


# ---------------------------------------------------------------- config


def plan_for(tta: dict, kind: str = "image", shape: list[int] | None = None):
    raw = {
        "data": {"name": "file", "path": "x.csv", "target": "y", "kind": kind,
                 "shape": shape or ([1, 8, 8] if kind == "image" else [12, 3])},
        "split": {"name": "kfold"},
        "evaluate": {"tta": tta},
    }
    return resolve(parse_config(raw), default_registry())


def test_config_resolves_compose_and_records_every_setting() -> None:
    """compose builds its parts; the resolved config holds merge, beta, mode, chunk and the parts."""
    plan = plan_for({"transforms": [{"name": "compose", "transforms": [{"name": "shift", "dx": [-1, 1], "dy": [0]},
                                                                       {"name": "hflip"}]}],
                     "merge": "beta", "beta": 0.4, "mode": "loop", "chunk": 32})
    (compose,) = plan.tta
    assert compose.label == "shift_x_hflip" and len(compose.views()) == 5
    resolved = plan.resolved["evaluate"]["tta"]
    assert resolved["merge"] == "beta" and resolved["beta"] == 0.4
    assert resolved["mode"] == "loop" and resolved["chunk"] == 32
    assert resolved["transforms"][0]["transforms"][0] == {"name": "shift", "dx": [-1, 1], "dy": [0], "fill": "edge"}


@pytest.mark.parametrize(
    ("tta", "kind", "shape", "message"),
    [
        ({"transforms": [{"name": "hflip"}]}, "sequence", None,
         "evaluate.tta.transforms.0.name: transform 'hflip' does not fit sequence data; it fits image"),
        ({"transforms": [{"name": "compose", "transforms": [{"name": "hflip"}, {"name": "reverse"}]}]}, "image", None,
         "evaluate.tta.transforms.0.transforms.1.name: transform 'reverse' does not fit image data"),
        ({"transforms": [{"name": "rot90"}]}, "image", [1, 8, 6], "odd quarter turns need square images"),
        ({"transforms": [{"name": "time_shift", "shifts": [12]}]}, "sequence", None, "shorter than the 12 steps"),
        ({"transforms": [{"name": "shift", "dx": [0], "dy": [0]}]}, "image", None, "no offset but (0, 0)"),
        ({"transforms": [{"name": "noise", "copies": 0}]}, "image", None, "evaluate.tta.transforms.0"),
        ({"transforms": [], "merge": "vote"}, "image", None, "evaluate.tta.merge"),
        ({"transforms": [], "mode": "fast"}, "image", None, "evaluate.tta.mode"),
        ({"transforms": [], "beta": 1.5}, "image", None, "evaluate.tta.beta"),
    ],
)
def test_bad_tta_config_is_a_config_error(tta: dict, kind: str, shape, message: str) -> None:
    """A transform on a data kind it does not fit, or bad parameters, name the field."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_for(tta, kind, shape)
