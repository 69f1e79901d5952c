import math

import numpy as np
import pytest

from shared.errors import InvalidInput, PayloadTooLarge
from shared.inputs import FeatureIndex, number_from_text, parse_instances, parse_json, parse_query
from tests.helpers import IRIS_FEATURES

INDEX = FeatureIndex(IRIS_FEATURES)


@pytest.mark.parametrize("text, value", [("5.8", 5.8), ("6", 6.0), ("-1e2", -100.0), (".5", 0.5), (" 3.4 ", 3.4)])
def test_decimal_text_becomes_a_float(text: str, value: float) -> None:
    assert number_from_text("length", text) == value


@pytest.mark.parametrize("text, code", [
    ("abc", "not_a_number"), ("", "not_a_number"), ("nan", "not_a_number"), ("inf", "not_a_number"), ("\u0665", "not_a_number"),
    ("-Infinity", "not_a_number"), ("1_0", "not_a_number"), ("0x10", "not_a_number"), ("1e999", "not_finite"),
])
def test_text_that_is_no_finite_number_is_refused_naming_the_field(text: str, code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        number_from_text("width", text)
    assert (caught.value.field, caught.value.code, caught.value.status) == ("width", code, 400)


def test_query_takes_aliases_or_full_names_in_any_order() -> None:
    assert parse_query(INDEX, {"sepal_width": ["3.4"], "length": ["5.8"]}) == (5.8, 3.4)


@pytest.mark.parametrize("params, field, code", [
    ({"length": ["5.8"]}, "width", "missing_field"),
    ({"length": ["5.8"], "width": ["3.4"], "color": ["red"]}, "color", "unknown_field"),
    ({"length": ["5.8", "5.9"], "width": ["3.4"]}, "length", "duplicate_field"),
    ({"length": ["5.8"], "sepal_length": ["5.8"], "width": ["3.4"]}, "sepal_length", "duplicate_field"),
])
def test_query_with_missing_extra_or_repeated_parameters_is_refused(params, field, code) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_query(INDEX, params)
    assert (caught.value.field, caught.value.code) == (field, code)


def test_instances_mix_lists_and_named_objects_in_order() -> None:
    document = {"instances": [[5.8, 3.4], {"width": 2.8, "length": 6}, {"sepal_length": 5, "sepal_width": 3.5}]}
    rows = parse_instances(INDEX, document, max_rows=10)
    assert rows.dtype == np.float64
    assert rows.tolist() == [[5.8, 3.4], [6.0, 2.8], [5.0, 3.5]]


@pytest.mark.parametrize("document, field, code", [
    ([[5.8, 3.4]], "body", "invalid_body"),
    ({}, "instances", "missing_field"),
    ({"instances": [[5.8, 3.4]], "parameters": {}}, "parameters", "unknown_field"),
    ({"instances": {"length": 5.8}}, "instances", "invalid_body"),
    ({"instances": []}, "instances", "empty_batch"),
    ({"instances": [[5.8]]}, "instances[0]", "wrong_length"),
    ({"instances": [[5.8, 3.4], [5.8, 3.4, 1.0]]}, "instances[1]", "wrong_length"),
    ({"instances": [[5.8, "3.4"]]}, "instances[0][1]", "not_a_number"),
    ({"instances": [[True, 3.4]]}, "instances[0][0]", "not_a_number"),
    ({"instances": [[None, 3.4]]}, "instances[0][0]", "not_a_number"),
    ({"instances": [[1e308 * 10, 3.4]]}, "instances[0][0]", "not_finite"),
    ({"instances": [5.8]}, "instances[0]", "invalid_instance"),
    ({"instances": [{"length": 5.8}]}, "instances[0].width", "missing_field"),
    ({"instances": [{"length": 5.8, "width": 3.4, "petal": 1}]}, "instances[0].petal", "unknown_field"),
])
def test_malformed_batches_are_refused_naming_the_field(document, field, code) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_instances(INDEX, document, max_rows=10)
    assert (caught.value.field, caught.value.code) == (field, code)
    assert field in caught.value.message


def test_a_batch_over_the_limit_is_too_large() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        parse_instances(INDEX, {"instances": [[5.8, 3.4]] * 11}, max_rows=10)
    assert (caught.value.status, caught.value.code) == (413, "batch_too_large")
    assert "10" in caught.value.message and "MAX_BATCH_ROWS" in caught.value.message


@pytest.mark.parametrize("body, code", [
    (b'{"instances": [[NaN, 3.4]]}', "not_finite"),
    (b'{"instances": [[Infinity, 3.4]]}', "not_finite"),
    (b'{"instances": [[5.8, 3.4]]', "malformed_json"),
    (b"\xff\xfe", "malformed_json"),
    (b"[" * 100_000, "malformed_json"),
])
def test_json_that_is_malformed_or_holds_non_finite_constants_is_refused(body: bytes, code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_json(body)
    assert caught.value.code == code


def test_json_numbers_parse_to_floats() -> None:
    assert parse_json(b'{"instances": [[5.8, 3]]}') == {"instances": [[5.8, 3]]}
    assert not math.isnan(parse_json(b"1.5"))
