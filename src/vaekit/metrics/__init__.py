"""Disentanglement metrics: how well each latent of a representation captures one known factor
of variation.

On arrays, latents ``z`` (N, D) (e.g. the means of q(z|x)) and factors (N, F) (integer classes,
or real values as a float array):

- :func:`mig`: the Mutual Information Gap (Chen et al. 2018);
- :func:`sap`: the Separated Attribute Predictability score (Kumar et al. 2018);
- :func:`dci`: disentanglement, completeness and informativeness (Eastwood & Williams 2018).

On a model and a data set with factors (``shapes``, ``dsprites`` or a user's data with a
factors file), generating examples with one factor held fixed:

- :func:`factor_vae_score` (Kim & Mnih 2018) and :func:`beta_vae_score` (Higgins et al. 2017).

Where the papers leave a choice open the settings are those of disentanglement_lib (Locatello et
al. 2019), named in each docstring; every score is in [0, 1], higher is better.
"""

from __future__ import annotations

from .info import BINS, discretize, entropy, mig, mutual_info, mutual_info_matrix
from .predictive import IMPORTANCE, completeness, dci, disentanglement, sap
from .sampling import FactorSampler, representation
from .scores import beta_vae_score, factor_vae_score

#: The issue's spelling of the two scores.
factorvae_score = factor_vae_score
betavae_score = beta_vae_score

__all__ = [
    "BINS",
    "IMPORTANCE",
    "FactorSampler",
    "beta_vae_score",
    "betavae_score",
    "completeness",
    "dci",
    "discretize",
    "disentanglement",
    "entropy",
    "factor_vae_score",
    "factorvae_score",
    "mig",
    "mutual_info",
    "mutual_info_matrix",
    "representation",
    "sap",
]
