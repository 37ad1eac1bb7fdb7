"""The technique catalogue against its references: torch's attention, closed forms, brute force, scikit-learn."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scribbles.core import ModelSpec, TrainConfig, create
from scribbles.plugins.losses import supcon_loss
from scribbles.plugins.models.classic import MixtureClassifier, default_k
from scribbles.plugins.models.representation import kl_standard_normal
from scribbles.plugins.models.sequence import (
    SelfAttention,
    SequenceNorm,
    sequence_log_likelihood,
    shift_rotation,
    sinusoidal_encoding,
)
from sklearn.datasets import make_classification
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

# ---------------------------------------------------------------- transformer pieces


@pytest.mark.parametrize("heads", [1, 4])
def test_narrow_attention_equals_torch_multihead_attention(heads: int) -> None:
    """Narrow attention with MultiheadAttention's weights gives MultiheadAttention's output."""
    torch.manual_seed(0)
    d = 16
    ours = SelfAttention(d, heads, "narrow")
    theirs = torch.nn.MultiheadAttention(d, heads, batch_first=True)
    with torch.no_grad():
        for i, proj in enumerate((ours.q, ours.k, ours.v)):
            proj.weight.copy_(theirs.in_proj_weight[i * d : (i + 1) * d])
            proj.bias.copy_(theirs.in_proj_bias[i * d : (i + 1) * d])
        ours.out.weight.copy_(theirs.out_proj.weight)
        ours.out.bias.copy_(theirs.out_proj.bias)
    x = torch.randn(3, 7, d)
    expected, _ = theirs(x, x, x, need_weights=False)
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)


def test_wide_attention_gives_every_head_the_whole_embedding() -> None:
    """Wide heads are d_model wide; with one head, wide and narrow are the same computation."""
    wide = SelfAttention(12, 3, "wide")
    assert wide.head_width == 12 and wide.q.out_features == 36 and wide.out.in_features == 36
    assert SelfAttention(12, 3, "narrow").head_width == 4
    torch.manual_seed(1)
    one_wide, one_narrow = SelfAttention(8, 1, "wide"), SelfAttention(8, 1, "narrow")
    one_narrow.load_state_dict(one_wide.state_dict())
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(one_wide(x), one_narrow(x))


def test_sinusoidal_rows_have_norm_sqrt_half_d_and_shift_is_a_rotation() -> None:
    """|PE[p]| = sqrt(d/2) for every p, and PE[p + k] = R(k) PE[p] with R(k) orthogonal and independent of p."""
    d, steps = 16, 50
    pe = sinusoidal_encoding(steps, d).double()
    torch.testing.assert_close(pe.norm(dim=1), torch.full((steps,), math.sqrt(d / 2), dtype=torch.float64),
                               rtol=1e-6, atol=1e-6)
    for k in (1, 3, 7):
        rotation = shift_rotation(k, d)
        torch.testing.assert_close(rotation @ rotation.T, torch.eye(d, dtype=torch.float64))
        torch.testing.assert_close(pe[:-k] @ rotation.T, pe[k:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["layer", "batch", "instance"])
def test_sequence_norms_normalise_the_axes_the_notes_name(kind: str) -> None:
    """layer: per step over features; batch: per feature over batch and steps; instance: per feature per sample."""
    torch.manual_seed(0)
    x = torch.randn(4, 9, 6) * 3 + 2
    y = SequenceNorm(kind, 6).train()(x)
    axes = {"layer": (2,), "batch": (0, 1), "instance": (1,)}[kind]
    torch.testing.assert_close(y.mean(axes), torch.zeros_like(y.mean(axes)), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(axes, unbiased=False), torch.ones_like(y.mean(axes)), atol=1e-3, rtol=0)


# ---------------------------------------------------------------- losses


@pytest.mark.parametrize("n", [2, 5])
def test_supcon_on_identical_embeddings_is_log_2n_minus_1(n: int) -> None:
    """2N identical embeddings: every similarity is equal, so each anchor's loss is log(2N - 1)."""
    embeddings = torch.ones(2 * n, 8)
    labels = torch.arange(n).repeat(2)  # each sample and its "augmented view"
    loss = supcon_loss(embeddings, labels, temperature=0.1)
    assert float(loss) == pytest.approx(math.log(2 * n - 1), rel=1e-5)


def test_supcon_rewards_embeddings_clustered_by_class() -> None:
    """Embeddings grouped by class score lower than the same embeddings with shuffled labels."""
    torch.manual_seed(0)
    labels = torch.arange(4).repeat_interleave(4)
    centres = torch.randn(4, 8) * 3
    embeddings = centres[labels] + 0.1 * torch.randn(16, 8)
    assert float(supcon_loss(embeddings, labels, 0.1)) < float(supcon_loss(embeddings, labels[torch.randperm(16)], 0.1))


def collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    """CTC's many-to-one map: merge repeats, then drop blanks."""
    merged = [s for i, s in enumerate(path) if i == 0 or s != path[i - 1]]
    return tuple(s for s in merged if s != blank)


@pytest.mark.parametrize(("steps", "target"), [(3, (0,)), (4, (0, 1)), (4, (1, 1)), (5, (0, 1, 0))])
def test_ctc_equals_brute_force_path_sum(steps: int, target: tuple[int, ...]) -> None:
    """-log of the summed probability of every path that collapses to the target, enumerated by hand."""
    torch.manual_seed(steps)
    symbols = 3  # tokens 0, 1 and the blank (last)
    log_probs = torch.randn(1, steps, symbols).log_softmax(-1)
    blank = symbols - 1
    total = sum(
        math.exp(sum(float(log_probs[0, t, s]) for t, s in enumerate(path)))
        for path in itertools.product(range(symbols), repeat=steps)
        if collapse(path, blank) == target
    )
    classes = {(0, 1): "a b", (0,): "a", (1, 1): "b b", (0, 1, 0): "a b a"}
    spec = ModelSpec("sequence", (steps, 1), 4, ("a", "a b", "a b a", "b b"))
    vocabulary, sequences = spec.token_sequences()
    assert vocabulary == ["a", "b"]
    label = list(spec.classes).index(classes[target])
    loss = create("loss", "ctc").build(spec)
    ours = loss({"steps": log_probs}, (torch.zeros(1, steps, 1), torch.tensor([label])))
    assert float(ours) == pytest.approx(-math.log(total), rel=1e-5)
    scores = sequence_log_likelihood(log_probs, sequences)
    assert float(scores[0, label]) == pytest.approx(math.log(total), rel=1e-5)


def test_vae_kl_matches_its_closed_form() -> None:
    """KL(N(mu, s^2) || N(0, 1)) equals torch.distributions' closed form and a Monte Carlo estimate."""
    torch.manual_seed(0)
    mean, log_var = torch.randn(5, 3), torch.randn(5, 3)
    std = (0.5 * log_var).exp()
    q, p = torch.distributions.Normal(mean, std), torch.distributions.Normal(0.0, 1.0)
    ours = kl_standard_normal(mean, log_var)
    torch.testing.assert_close(ours, torch.distributions.kl_divergence(q, p).sum(-1))
    z = q.sample((200_000,))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(ours, monte_carlo, rtol=0.05, atol=0.02)


# ---------------------------------------------------------------- classic models


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = make_classification(n_samples=300, n_features=6, n_informative=4, n_redundant=0, n_classes=3,
                               random_state=0)
    return x[:220].astype(np.float32), y[:220], x[220:].astype(np.float32)


def fitted(name: str, x: np.ndarray, y: np.ndarray, **params: object):
    module = create("model", name, **params).build(ModelSpec("tabular", (x.shape[1],), 3))
    return module.fit(x, y)


def predictions(module, x: np.ndarray) -> np.ndarray:
    """What the evaluator predicts: the argmax of the module's forward pass."""
    return module(torch.from_numpy(x)).argmax(1).numpy()


def test_knn_defaults_to_round_ln_n_and_predicts_like_sklearn(blobs) -> None:
    x, y, test = blobs
    assert default_k(len(x)) == round(math.log(220)) == 5
    module = fitted("knn", x, y)
    reference = KNeighborsClassifier(n_neighbors=5, metric="euclidean").fit(x, y)
    assert module.estimator.n_neighbors == 5
    np.testing.assert_array_equal(predictions(module, test), reference.predict(test))
    manhattan = fitted("knn", x, y, k=3, metric="manhattan", weights="distance")
    reference = KNeighborsClassifier(n_neighbors=3, metric="manhattan", weights="distance").fit(x, y)
    np.testing.assert_array_equal(predictions(manhattan, test), reference.predict(test))


def test_classic_models_predicted_from_two_threads_keep_blas_single_threaded(capfd) -> None:
    """The tracker's logging thread predicts an input example while the next fold predicts: scikit-learn's
    BLAS cap (threadpoolctl, process-wide) must hold in both, or OpenBLAS warns inside an OpenMP loop that
    the application may hang (seen on activity-knn.yaml)."""
    import threading

    from scribbles.core.evaluation import EstimatorModule

    rng = np.random.default_rng(0)
    module = EstimatorModule(KNeighborsClassifier(7), 6).fit(rng.random((2000, 96)), rng.integers(0, 6, 2000))
    rows = rng.random((600, 96))
    expected = module.scores(rows)
    results: list[bool] = []

    def predict() -> None:
        results.extend(np.array_equal(module.scores(rows), expected) for _ in range(30))

    threads = [threading.Thread(target=predict) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 60
    assert "OpenBLAS Warning" not in capfd.readouterr().err


@pytest.mark.parametrize(("kernel", "C", "gamma"),
                         [("rbf", 1.0, "scale"), ("linear", 0.5, "scale"), ("poly", 2.0, 0.1)])
def test_svm_predicts_like_sklearn(blobs, kernel: str, C: float, gamma) -> None:
    x, y, test = blobs
    module = fitted("svm", x, y, kernel=kernel, C=C, gamma=gamma)
    reference = SVC(kernel=kernel, C=C, gamma=gamma, break_ties=True).fit(x, y)
    np.testing.assert_array_equal(predictions(module, test), reference.predict(test))


def test_decision_tree_uses_entropy_and_predicts_like_sklearn(blobs) -> None:
    x, y, test = blobs
    module = fitted("decision_tree", x, y)
    assert module.estimator.criterion == "entropy"
    reference = DecisionTreeClassifier(criterion="entropy", random_state=0).fit(x, y)
    np.testing.assert_array_equal(predictions(module, test), reference.predict(test))
    proba = module(torch.from_numpy(test)).softmax(1).numpy()
    np.testing.assert_allclose(proba, reference.predict_proba(test), atol=1e-6)


def test_gaussian_mixture_lower_bound_never_decreases(blobs) -> None:
    """EM's lower bound on the log-likelihood, iteration by iteration, for every class's mixture."""
    x, y, _ = blobs
    module = fitted("gaussian_mixture", x, y, components=3, covariance="full", max_iter=60, reg_covar=1e-6)
    for mixture in module.estimator.mixtures:
        bounds = np.array(mixture.lower_bounds_)  # one per EM iteration (scikit-learn >= 1.7)
        assert len(bounds) > 3
        assert np.all(np.diff(bounds) >= -1e-9), bounds
        assert bounds[-1] > bounds[0]


def test_gaussian_mixture_is_bayes_rule_over_per_class_mixtures(blobs) -> None:
    """p(c | x) = p(c) p(x | c) / sum: checked against the fitted mixtures, and it classifies well."""
    x, y, test = blobs
    module = fitted("gaussian_mixture", x, y, components=2, covariance="full")
    mixture: MixtureClassifier = module.estimator
    joint = np.stack([m.score_samples(test) for m in mixture.mixtures], 1) + np.log(np.bincount(y) / len(y))
    expected = np.exp(joint - joint.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(module(torch.from_numpy(test)).softmax(1).numpy(), expected, atol=1e-5)
    assert np.mean(predictions(module, x) == y) > 0.8


def test_representation_pretraining_lowers_reconstruction_error() -> None:
    """pretrain: N fits the autoencoder to its inputs before any label is seen."""
    torch.manual_seed(0)
    inputs = torch.randn(256, 2) @ torch.randn(2, 12)  # rank 2: a 4-wide bottleneck can hold it
    config = TrainConfig(epochs=1, batch_size=32, lr=3e-3)
    for name in ("autoencoder", "vae"):
        model = create("model", name, hidden=[32], latent=4, pretrain=30, beta=0.01) if name == "vae" else \
            create("model", name, hidden=[32], latent=4, pretrain=30)
        module = model.build(ModelSpec("tabular", (12,), 3))
        module.eval()
        with torch.no_grad():
            before = float(module(inputs)["objective"])
        assert model.pretrain(module, inputs, config)
        module.eval()
        with torch.no_grad():
            assert float(module(inputs)["objective"]) < 0.5 * before
