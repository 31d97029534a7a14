"""VAE as a density estimator (post 8791, spec 02): importance-sampled ``log p(x)`` for any
latent-variable model, the VAE and IWAE objectives, and the IWAE paper's architectures.

The protocol (:class:`LatentVariableModel`): ``encode(x)``, ``decode(z)`` and ``prior()`` each
return a ``torch.distributions.Distribution``. kexue names roles (encoder/proposal, decoder,
prior), never the post's swapped p/q letters (spec 02 §0).
"""

from __future__ import annotations

from ._ais import AISEstimate, ais_log_likelihood, sigmoid_schedule
from ._likelihood import (
    LogLikelihoodEstimate,
    bits_per_dim,
    dequantized_bits_per_dim,
    log_likelihood,
)
from ._models import (
    BernoulliDecoder,
    ChainDistribution,
    GaussianDecoder,
    GaussianEncoder,
    LatentModel,
    TwoLayerModel,
    iwae_architecture,
    standard_normal,
)
from ._objectives import iwae_loss, log_weights, multi_sample_vae_loss, vae_loss
from ._protocol import LatentVariableModel, check_model
from ._training import DensityTrainingConfig, binarize, train_density_model
from .oracle import LinearGaussian, LinearGaussianMixture, WithProposal

__all__ = [
    "AISEstimate",
    "BernoulliDecoder",
    "ChainDistribution",
    "DensityTrainingConfig",
    "GaussianDecoder",
    "GaussianEncoder",
    "LatentModel",
    "LatentVariableModel",
    "LinearGaussian",
    "LinearGaussianMixture",
    "LogLikelihoodEstimate",
    "TwoLayerModel",
    "WithProposal",
    "ais_log_likelihood",
    "binarize",
    "bits_per_dim",
    "check_model",
    "dequantized_bits_per_dim",
    "iwae_architecture",
    "iwae_loss",
    "log_likelihood",
    "log_weights",
    "multi_sample_vae_loss",
    "sigmoid_schedule",
    "standard_normal",
    "train_density_model",
    "vae_loss",
]
