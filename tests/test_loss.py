"""mpvae.loss against closed forms, torch.distributions, and the plain VAE objective."""
import math
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, Independent, kl_divergence
from mpvae.model import MPVAE, MPVAEOutput
from mpvae.loss import kl_normal, recon_nll, MPVAELoss, LossConfig

def test_kl_closed_form_by_hand():
    # 2 dims: (mu=0.5, var=2) and (mu=-1, var=0.5); KL = 0.5*sum(mu^2 + var - 1 - log var)
    mu = torch.tensor([[0.5, -1.0]]); lv = torch.log(torch.tensor([[2.0, 0.5]]))
    by_hand = 0.5*((0.25 + 2 - 1 - math.log(2)) + (1 + 0.5 - 1 - math.log(0.5)))
    assert kl_normal(mu, lv).item() == pytest.approx(by_hand, rel=1e-6)

def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, lv = torch.randn(16, 7, generator=g)*2, torch.randn(16, 7, generator=g)*1.5
    q = Independent(Normal(mu, torch.exp(0.5*lv)), 1)
    p = Independent(Normal(torch.zeros(7), torch.ones(7)), 1)
    assert torch.allclose(kl_normal(mu, lv), kl_divergence(q, p), rtol=1e-5, atol=1e-5)

def test_bce_tiny_case():
    # p = sigmoid(logit): logit 0 -> 1/2, log 3 -> 3/4, -log 3 -> 1/4
    logits = torch.tensor([0., math.log(3), -math.log(3), math.log(3)]).view(1, 1, 2, 2)
    x = torch.tensor([1., 1., 1., 0.]).view(1, 1, 2, 2)
    expect = -(math.log(1/2) + math.log(3/4) + math.log(1/4) + math.log(1/4))
    assert recon_nll(logits, x).item() == pytest.approx(expect, rel=1e-6)
    # extreme logits stay finite (computed from logits, not log(sigmoid))
    assert torch.isfinite(recon_nll(torch.full((1, 1, 2, 2), 200.), torch.zeros(1, 1, 2, 2))).all()

def test_gaussian_nll_matches_normal_log_prob():
    g = torch.Generator().manual_seed(1)
    logits, x = torch.randn(3, 3, 4, 4, generator=g), torch.rand(3, 3, 4, 4, generator=g)
    for sigma in (0.1, 1.0):
        expect = -Normal(torch.sigmoid(logits), sigma).log_prob(x).flatten(1).sum(1)
        assert torch.allclose(recon_nll(logits, x, 'gaussian', math.log(sigma)), expect, rtol=1e-5)

def _out(seed=0, n=6):
    torch.manual_seed(seed)
    m = MPVAE(latent_dims=(3, 9))
    x = (torch.rand(n, 1, 64, 64) > 0.7).float()
    return m(x), x

def test_elbo_terms_sum_and_batch_mean():
    out, x = _out()
    lf = MPVAELoss(betas=(2., 0.5))
    loss = lf(out, x)
    bce = F.binary_cross_entropy_with_logits(out.logits, x, reduction='sum') / len(x)   # summed over pixels, mean over batch
    q = [Independent(Normal(m, torch.exp(0.5*lv)), 1) for m, lv in zip(out.mu, out.logvar)]
    kls = [kl_divergence(qk, Independent(Normal(torch.zeros_like(qk.mean), 1.), 1)).mean() for qk in q]
    assert loss.item() == pytest.approx((bce + 2*kls[0] + 0.5*kls[1]).item(), rel=1e-5)
    assert lf.last['recon'].item() == pytest.approx(bce.item(), rel=1e-5)
    assert [k.item() for k in lf.last['kl']] == pytest.approx([k.item() for k in kls], rel=1e-4, abs=1e-7)
    assert lf.last['nelbo'].item() == pytest.approx((bce + kls[0] + kls[1]).item(), rel=1e-5)

def test_beta_one_is_plain_vae_of_concatenated_latent():
    out, x = _out(seed=3)
    mpvae_loss = MPVAELoss(betas=(1., 1.))(out, x)
    # the plain VAE objective with z = (z_1, z_2): one Gaussian posterior of 12 dims
    mu, lv = torch.cat(out.mu, 1), torch.cat(out.logvar, 1)
    q = Independent(Normal(mu, torch.exp(0.5*lv)), 1)
    kl = kl_divergence(q, Independent(Normal(torch.zeros(12), torch.ones(12)), 1))
    nll = F.binary_cross_entropy_with_logits(out.logits, x, reduction='none').sum((1, 2, 3))
    assert mpvae_loss.item() == pytest.approx((nll + kl).mean().item(), rel=1e-5)
    assert MPVAELoss()(out, x).item() == pytest.approx(mpvae_loss.item(), rel=1e-6)   # betas=None means all 1

def test_schedules_and_capacity():
    out, x = _out(seed=4)
    lf = MPVAELoss(betas=4.)
    lf(out, x); r, k = lf.last['recon'], lf.last['kl']
    lf.beta_weight = 0.25
    assert lf(out, x).item() == pytest.approx((r + k[0] + k[1]).item(), rel=1e-5)
    lf.beta_weight, lf.capacity, lf.gamma = 1., 3., 10.
    assert lf(out, x).item() == pytest.approx((r + 10*((k[0] - 3).abs() + (k[1] - 3).abs())).item(), rel=1e-5)

def test_errors_and_config():
    out, x = _out()
    with pytest.raises(ValueError, match='3 values but the model has 2 paths'): MPVAELoss(betas=(1, 1, 1))(out, x)
    with pytest.raises(ValueError, match='differ in shape'): recon_nll(out.logits, x[:, :, :32])
    with pytest.raises(TypeError, match='MPVAEOutput'): MPVAELoss()(out.logits, x)
    with pytest.raises(ValueError, match='betas must be >= 0'): LossConfig(betas=(-1., 1.))
    assert MPVAELoss(LossConfig(**LossConfig(betas=(1., 2.), recon='gaussian').to_dict())).config.betas == (1., 2.)

def test_learned_sigma_gets_gradient():
    out, x = _out()
    lf = MPVAELoss(recon='gaussian', learn_sigma=True, sigma=0.5)
    lf(MPVAEOutput(out.logits.detach(), [m.detach() for m in out.mu], [l.detach() for l in out.logvar], out.z), x).backward()
    assert lf.log_sigma.grad is not None and lf.log_sigma.grad.abs() > 0
