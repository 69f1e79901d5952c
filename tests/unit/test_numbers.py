"""The one number parser both protocols use: what is a number, and whether it fits its datatype."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import InvalidInput
from shared.numbers import FLOAT_LIMITS, array_from_json, check_boolean, check_number


def element(i: int) -> str:
    return f"data[{i}]"


def test_plain_json_numbers_become_float64() -> None:
    array = array_from_json([5.8, 3, -0.0, 1e308], None, element)
    assert array.dtype == np.float64 and array.tolist() == [5.8, 3.0, -0.0, 1e308]


@pytest.mark.parametrize("values, index, code", [
    ([1.0, True], 1, "not_a_number"), ([None], 0, "not_a_number"), (["5.8"], 0, "not_a_number"),
    ([1.0, [2.0]], 1, "not_a_number"), ([1.0, 2**1024 - 1], 1, "not_finite"), ([10**400], 0, "not_finite"),
    ([float("nan")], 0, "not_finite"), ([1.0, float("inf")], 1, "not_finite"),
])
def test_the_slow_path_names_the_first_element_at_fault(values, index: int, code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        array_from_json(values, None, element)
    assert (caught.value.code, caught.value.field) == (code, f"data[{index}]")


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
def test_each_float_type_takes_its_largest_finite_value_and_refuses_beyond(datatype: str) -> None:
    limit = FLOAT_LIMITS[datatype]
    assert array_from_json([limit, -limit], datatype, element).tolist() == [limit, -limit]
    beyond = 2**1024 if datatype == "FP64" else limit * 1.001
    with pytest.raises(InvalidInput) as caught:
        array_from_json([0.0, beyond], datatype, element, field="data")
    assert caught.value.field == "data" and caught.value.message.startswith("data[1]:")


@pytest.mark.parametrize("datatype, low, high", [("INT8", -128, 127), ("UINT8", 0, 255), ("INT64", -(2**63), 2**63 - 1),
                                                 ("UINT64", 0, 2**64 - 1)])
def test_each_integer_type_takes_its_range_and_refuses_one_past_either_end(datatype: str, low: int, high: int) -> None:
    assert array_from_json([low, high], datatype, element).tolist() == [low, high]
    for outside in (low - 1, high + 1):
        with pytest.raises(InvalidInput) as caught:
            array_from_json([low, outside], datatype, element)
        assert (caught.value.code, caught.value.field) == ("out_of_range", "data[1]")


def test_an_integer_type_refuses_floats_and_booleans() -> None:
    for wrong in (1.0, True):
        with pytest.raises(InvalidInput, match="expected an integer for INT32"):
            array_from_json([1, wrong], "INT32", element)


def test_one_value_is_checked_by_the_same_rules() -> None:
    assert check_number("x", 5) == 5.0
    with pytest.raises(InvalidInput, match=r"x: an integer of 310 digits is beyond the range of a float"):
        check_number("x", 10**308 * 10)


def test_booleans_are_only_true_or_false() -> None:
    assert check_boolean("p", True) is True
    for wrong in ("true", 1, None, 0):
        with pytest.raises(InvalidInput, match="p: expected true or false"):
            check_boolean("p", wrong)
