"""Bad input to the shipped-kernel loader: every wrong name or index is refused with a message
that lists the names there are."""

import pytest

from benchmarks.blur import BlurOperator, levin_kernel, named_kernel
from benchmarks.errors import UserError

NAMES = "levin09:1, levin09:2, levin09:3, levin09:4, levin09:5, levin09:6, levin09:7, levin09:8"


@pytest.mark.parametrize("name", ["levin09:9", "levin09:0", "levin09", "gauss:1", "", "levin09:-1"])
def test_bad_input_unknown_kernel_name(name):
    with pytest.raises(UserError) as err:
        named_kernel(name)
    assert str(err.value) == f"unknown kernel name {name!r}: the shipped kernels are {NAMES}"
    with pytest.raises(UserError):
        BlurOperator.named(name)


def test_bad_input_kernel_index_that_is_not_a_number():
    with pytest.raises(UserError, match=r"after 'levin09:' comes a number from 1 to 8"):
        named_kernel("levin09:four")


@pytest.mark.parametrize("index", [0, 9, 2.0, "4", True])
def test_bad_input_levin_kernel_index(index):
    with pytest.raises(UserError, match="Levin kernel index must be"):
        levin_kernel(index)
