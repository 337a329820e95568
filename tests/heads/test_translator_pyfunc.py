"""The translator pyfunc reads source sentences from the request shapes it documents and refuses
anything else with an error that names the offending row or type."""

import numpy as np
import pandas as pd
import pytest

from triad.errors import DataError
from triad.heads.translator.pyfunc import TranslatorPyfunc, sentences_of

SOURCES = ["Jesus wept.", "Rejoice always."]


@pytest.mark.parametrize(
    "model_input",
    [
        SOURCES,
        pd.Series(SOURCES),
        pd.DataFrame({"text": SOURCES}),
        pd.DataFrame({0: SOURCES}),
        pd.DataFrame({"ref": ["a", "b"], "source": SOURCES}),
    ],
)
def test_documented_inputs_give_their_sentences(model_input):
    assert sentences_of(model_input) == SOURCES


def test_a_single_string_is_one_sentence_and_an_empty_list_none():
    assert sentences_of("Jesus wept.") == ["Jesus wept."]
    assert sentences_of([]) == []


@pytest.mark.parametrize(
    "model_input, match",
    [
        ({"Jesus wept.": 1}, "not dict"),
        (np.array([SOURCES, SOURCES]), "not ndarray"),
        (42, "not int"),
        (["Jesus wept.", None], r"row 1 of the input is None \(NoneType\), not a string"),
        (pd.Series(["Jesus wept.", float("nan")]), r"row 1 of the input is nan \(float\)"),
        ([["Jesus wept."]], r"row 0 of the input is \['Jesus wept.'\] \(list\)"),
        (pd.DataFrame({"a": SOURCES, "b": SOURCES}), r"DataFrame with 2 columns \['a', 'b'\]"),
    ],
)
def test_other_inputs_are_refused_naming_what_was_wrong(model_input, match):
    with pytest.raises(DataError, match=match):
        sentences_of(model_input)


def test_predict_refuses_a_bad_request_before_translating():
    with pytest.raises(DataError, match="not dict"):
        TranslatorPyfunc().predict(None, {"source": "Jesus wept."})  # no model loaded: it never gets that far
