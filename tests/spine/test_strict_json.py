"""Summaries and metrics files are strict JSON: a figure that does not exist (the evidence's epochs to a
target never reached, NaN in Python) is written as null, which jq and JavaScript read; ``NaN`` they refuse."""

import json
import math

from triad.jsonio import write_json


def refuse(constant):
    raise ValueError(f"not strict JSON: {constant}")


def test_nan_and_infinities_are_written_as_null_at_any_depth(tmp_path):
    path = tmp_path / "reports" / "summary.json"
    write_json(
        path,
        {
            "epochs_to_target": math.nan,
            "summary": [{"fid": math.inf, "score": 0.93}],
            "bounds": (-math.inf, 1.0),
            "runs": 4,
            "arm": "scratch",
        },
    )
    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "epochs_to_target": None,
        "summary": [{"fid": None, "score": 0.93}],
        "bounds": [None, 1.0],
        "runs": 4,
        "arm": "scratch",
    }
