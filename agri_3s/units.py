"""Area units. 1 mu (亩) = 10 000 / 15 m² exactly (666.67 m²); 15 mu = 1 ha."""

from __future__ import annotations

M2_PER_MU = 10_000.0 / 15.0
M2_PER_HA = 10_000.0


def m2_to_mu(m2):
    """Square metres → mu. ``m2_to_mu(666.6667)`` ≈ 1.0"""
    return m2 / M2_PER_MU


def mu_to_m2(mu):
    """Mu → square metres. ``mu_to_m2(15)`` == 10 000.0"""
    return mu * M2_PER_MU
