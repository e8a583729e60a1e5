"""Fixtures of the experiments' tests: the deblurring tests' ``kit`` (`tests.dnmf.deblur_kit`)."""

from __future__ import annotations

import pytest

from tests.dnmf.deblur_kit import make_kit


@pytest.fixture(scope="session")
def kit():
    """``ConvBlur``, ``ReflectBlur``, ``synthetic``, ``quant``, ``psnr``: see
    `tests.dnmf.deblur_kit`."""
    return make_kit()
