"""Evaluation metrics in feature space: FID against known values, precision and recall of a set against itself."""

import numpy as np
import pytest

from triad.heads.diffusion.evaluate import frechet_distance, precision_recall


def with_moments(rng: np.random.Generator, n: int, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """n points (n, F) whose sample mean and covariance (np.cov) are exactly ``mean`` and ``cov``."""
    z = rng.normal(size=(n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # whitened: cov(z) == I
    return z @ np.linalg.cholesky(cov).T + mean


def random_rotation(rng: np.random.Generator, f: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(f, f)))
    return q


def test_fid_of_a_set_against_itself_is_zero():
    features = np.maximum(np.random.default_rng(0).normal(size=(300, 32)), 0)  # ReLU-like, as the judge's
    assert frechet_distance(features, features) == pytest.approx(0, abs=1e-8)


def test_fid_of_gaussians_with_commuting_covariances():
    """S_a = Q diag(a) Q^T, S_b = Q diag(b) Q^T: FID = |mu_a - mu_b|^2 + sum (sqrt(a) - sqrt(b))^2."""
    rng = np.random.default_rng(1)
    q = random_rotation(rng, 4)
    a, b = np.array([1.0, 4.0, 0.25, 9.0]), np.array([4.0, 1.0, 0.25, 1.0])
    mu_a, mu_b = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    real = with_moments(rng, 500, mu_a, q @ np.diag(a) @ q.T)
    fake = with_moments(rng, 700, mu_b, q @ np.diag(b) @ q.T)
    expected = 1 + 4 + (1 + 1 + 0 + 4)  # |mu_a - mu_b|^2 = 5; sum (sqrt a - sqrt b)^2 = 1 + 1 + 0 + 4
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(fake, real) == pytest.approx(expected, rel=1e-9)


def test_fid_against_a_standard_normal_with_a_non_commuting_covariance():
    """S_a = I: Tr(S_a S_b)^1/2 = sum sqrt(lambda_i(S_b)), so FID = sum (1 - sqrt(lambda_i))^2 at equal means."""
    rng = np.random.default_rng(2)
    q = random_rotation(rng, 3)
    lambdas = np.array([0.5, 2.0, 6.0])
    real = with_moments(rng, 400, np.zeros(3), np.eye(3))
    fake = with_moments(rng, 400, np.zeros(3), q @ np.diag(lambdas) @ q.T)
    assert frechet_distance(real, fake) == pytest.approx(((1 - np.sqrt(lambdas)) ** 2).sum(), rel=1e-9)


def test_fid_of_non_finite_features_is_nan():
    features = np.random.default_rng(3).normal(size=(50, 4))
    broken = features.copy()
    broken[3, 1] = np.nan
    assert np.isnan(frechet_distance(features, broken))


def test_precision_and_recall_of_a_set_against_itself_are_one():
    features = np.random.default_rng(4).normal(size=(200, 8)).astype(np.float32)
    assert precision_recall(features, features, k=3) == (1.0, 1.0)


def test_a_collapsed_generator_is_precise_but_recalls_little():
    """Fakes squeezed into the middle of the real cloud lie inside its manifold but cover little of it."""
    rng = np.random.default_rng(5)
    real = rng.normal(size=(300, 8)).astype(np.float32)
    fake = (0.1 * rng.normal(size=(300, 8))).astype(np.float32)
    precision, recall = precision_recall(real, fake, k=3)
    assert precision == 1.0 and recall < 0.1
