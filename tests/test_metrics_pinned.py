"""Every disentanglement metric and probe statistic pinned from both sides, on examples worked by hand.

The other metric tests check floors (perfect codes score "above 0.97") and ceilings (noise "below 0.03"). A metric that
forgot a normalisation can pass a floor: MIG without its division by the factor entropy gives perfect codes a score of
about 1.5. Here each value is known exactly, from the construction:

* tiny balanced designs where every mutual information is a multiple of ln 2 and every importance matrix is written down;
* DCI on importance matrices that are not square (more codes than factors and fewer), where swapping the two entropy
  bases changes the answer;
* the KL term with log-variances that do not cancel, and balanced accuracy with a class absent from the validation rows,
  both against scikit-learn or a hand computation.
"""
import math, warnings
import numpy as np
import pytest
import torch
from mpvae.disentangle import mig, dci, sap, dci_scores, mi_matrix, factor_entropy

LN2 = math.log(2)

def design(reps=50):
    "Two binary factors, every combination `reps` times: (f0, f1) = (0,0), (0,1), (1,0), (1,1)."
    return np.tile(np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), (reps, 1))

def test_mig_is_one_for_a_perfect_code_and_never_above():
    y = design()
    r = mig(y.astype(float), y, n=None)
    # each dimension carries its own factor's whole entropy (ln 2) and nothing of the other's: gap / H = 1 exactly
    assert r['mi'] == pytest.approx(np.eye(2), abs=1e-12)
    assert r['mig'] == pytest.approx(1.0, abs=1e-12)

def test_mig_of_a_half_mixed_code_by_hand():
    "dim0 = f0, dim1 = f0 + f1 (values 0, 1, 2 with probabilities 1/4, 1/2, 1/4)."
    y = design()
    codes = np.c_[y[:, 0], y[:, 0] + y[:, 1]].astype(float)
    # I(dim1; f0) = H(dim1) - H(dim1 | f0) = 1.5 bits - 1 bit = 0.5 bit = ln2 / 2, and the same for f1
    assert mi_matrix(codes, y) == pytest.approx(np.array([[LN2, 0], [LN2 / 2, LN2 / 2]]), abs=1e-12)
    assert factor_entropy(y) == pytest.approx([LN2, LN2], abs=1e-12)
    # f0: top ln2 (dim0), second ln2/2 (dim1) -> gap 1/2; f1: top ln2/2 (dim1), second 0 (dim0) -> gap 1/2
    r = mig(codes, y, n=None)
    assert r['per_factor'] == pytest.approx({'factor0': 0.5, 'factor1': 0.5}, abs=1e-12)
    assert r['mig'] == pytest.approx(0.5, abs=1e-12)

def test_mig_of_shuffled_and_constant_codes_is_about_zero():
    rng = np.random.default_rng(0)
    y = rng.integers(0, [3, 4], size=(4000, 2))
    shuffled = y[rng.permutation(len(y))].astype(float)        # the perfect code, rows no longer matched
    # plug-in MI of independent variables is biased up by about (a-1)(b-1)/(2N) nats: here < 0.002 of H
    assert 0 <= mig(shuffled, y, n=None)['mig'] < 0.01
    const = np.c_[np.zeros(4000), np.zeros(4000)]
    assert mig(const, y, n=None)['mig'] == pytest.approx(0.0, abs=1e-12)

@pytest.mark.parametrize('R, D, C', [
    # more codes than factors: an unused third code changes nothing (its weight is 0)
    (np.array([[1., 0], [0, 1], [0, 0]]), 1.0, 1.0),
    # more codes than factors: one code serves both factors -> not disentangled (1 - ln2/ln2 = 0), complete
    (np.array([[1., 1], [0, 0], [0, 0]]), 0.0, 1.0),
    # fewer codes than factors: code 0 splits over 2 of the 3 factors, 1 - ln2/ln3; weights 2 and 1 of 3
    (np.array([[1., 1, 0], [0, 0, 1]]), (2 * (1 - math.log(2) / math.log(3)) + 1) / 3, 1.0),
    # fewer codes than factors: factor 0 split over both codes, 1 - ln2/ln2 = 0; weights 2, 1, 1 of 4 (columns)
    (np.array([[1., 1, 0], [1, 0, 1]]), 1 - math.log(2) / math.log(3), (0 * 2 + 1 + 1) / 4),
])
def test_dci_on_non_square_importances_by_hand(R, D, C):
    assert dci_scores(R) == pytest.approx((D, C), abs=1e-6)

def test_dci_swapped_bases_would_differ():
    "The 2 x 3 case above with the two entropy bases swapped gives 1/3, not 0.579: the test distinguishes them."
    R = np.array([[1., 1, 0], [0, 0, 1]])
    right = (2 * (1 - math.log(2) / math.log(3)) + 1) / 3
    swapped = (2 * (1 - math.log(2) / math.log(2)) + 1) / 3
    assert abs(right - swapped) > 0.2 and dci_scores(R)[0] == pytest.approx(right, abs=1e-6)

def test_dci_end_to_end_with_more_codes_than_factors():
    "codes = (f0, f1, noise): the trees use the own code; the noise code gets ~no importance; every factor predicted."
    rng = np.random.default_rng(1)
    y = rng.integers(0, [3, 4], size=(1500, 2))
    codes = np.c_[y, rng.normal(size=1500)].astype(float)
    r = dci(codes, y, 1000, 500)
    assert r['importance'].shape == (3, 2) and list(r['importance'].argmax(0)) == [0, 1]
    assert r['disentanglement'] > 0.9 and r['completeness'] > 0.9 and r['informativeness'] == pytest.approx(1.0)

def test_sap_of_a_perfect_binary_code_is_one_half():
    "Own code: a 1-D threshold is right every time; the other code is independent of the factor: right half the time."
    y = design(100)
    r = sap(y.astype(float), y, n_train=300, n_test=100)
    assert np.diag(r['score_matrix']) == pytest.approx([1, 1])
    assert r['sap'] == pytest.approx(0.5, abs=0.1) and r['sap'] <= 0.5 + 0.1
    shuffled = y[np.random.default_rng(2).permutation(len(y))].astype(float)
    assert sap(shuffled, y, n_train=300, n_test=100)['sap'] < 0.1

def test_kl_closed_form_with_log_variances_that_do_not_cancel():
    "Variances 3 and 1/4 (log 3 + log 1/4 != 0), so a wrong coefficient on log var changes the value."
    from mpvae.loss import kl_normal
    mu, var = torch.tensor([[0.5, -1.0]]), torch.tensor([[3.0, 0.25]])
    by_hand = 0.5 * ((0.25 + 3 - 1 - math.log(3)) + (1 + 0.25 - 1 - math.log(0.25)))
    assert math.log(3) + math.log(0.25) != pytest.approx(0, abs=0.1)
    assert kl_normal(mu, torch.log(var)).item() == pytest.approx(by_hand, rel=1e-6)

def test_balanced_accuracy_skips_a_class_absent_from_the_validation_rows():
    "Classes 0, 1, 2; validation rows of classes 0, 0, 1, 1 only; hits 2 of 2 and 1 of 2: (1 + 1/2) / 2 = 0.75."
    from sklearn.metrics import balanced_accuracy_score
    from mpvae.probe import _balanced
    hits = torch.tensor([2., 1., 0.]).view(1, 1, 1, 3)          # (S, E, Lg, C): correct predictions by true class
    y = torch.tensor([0, 0, 1, 1]).view(1, 4, 1)                 # (S, m, Lg)
    ours = _balanced(hits, y, 3).item()
    with warnings.catch_warnings():   # scikit-learn may note that class 2 is predicted but absent from y_true
        warnings.simplefilter('ignore'); sk = balanced_accuracy_score([0, 0, 1, 1], [0, 0, 1, 2])
    assert ours == pytest.approx(0.75) and sk == pytest.approx(0.75)


# ---------------------------------------------------------------- FactorVAE and BetaVAE: codes that miss factors

from mpvae.disentangle import factor_vae_score, beta_vae_score, ToyGroundTruth
TOY = ToyGroundTruth([1, 3, 4, 5, 6], ['color', 'shape', 'scale', 'posX', 'posY'])   # four usable factors

def without(n_missing, seed=3):
    "A code holding the first 4 - n_missing usable factors exactly, and independent noise in place of the others."
    g = np.random.default_rng(seed)
    return lambda im: np.c_[im[:, 1:5 - n_missing].astype(float), g.normal(size=(len(im), n_missing))]

def test_factor_vae_score_of_a_code_missing_one_factor_by_hand():
    """posY is not encoded. Fixing shape, scale or posX zeroes its own dimension: always the argmin, always voted right.
    Fixing posY zeroes none: every dimension's normalised variance is about 1 and the argmin falls on each of the four
    with probability 1/4; the noise dimension gets votes from posY batches only, so the classifier maps it to posY and
    those batches are right 1 time in 4. Accuracy = 3/4 + 1/4 x 1/4 = 0.8125."""
    r = factor_vae_score(TOY, without(1), n_train=800, n_eval=800, n_var=3000, batch_size=64)
    assert r['eval_accuracy'] == pytest.approx(0.8125, abs=0.04)      # sd of the posY share: sqrt(.25 * .75 / 200) = .03
    assert factor_vae_score(TOY, without(0), n_train=400, n_eval=400, n_var=2000)['eval_accuracy'] == 1.0

def test_beta_vae_score_of_a_code_missing_two_factors_by_hand():
    """posX and posY are not encoded: batches that fix either one have the same feature distribution (no dimension
    near 0), so no classifier tells them apart; the two encoded factors are read exactly. Accuracy = 2/4 + 2/4 x 1/2."""
    r = beta_vae_score(TOY, without(2), n_train=800, n_eval=800)
    assert r['eval_accuracy'] == pytest.approx(0.75, abs=0.05)
    assert beta_vae_score(TOY, without(0), n_train=400, n_eval=400)['eval_accuracy'] >= 0.97
