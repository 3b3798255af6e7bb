"""Prompt faithfulness judged from evaluator head outputs (hand-built outputs, exact answers)."""
import numpy as np
import pytest

from imagetext.errors import MetricInputError
from imagetext.metrics.faithfulness import faithfulness

BIRDS = {"world": "birds", "values": {"body_colour": ["red", "blue"], "pattern": ["plain", "striped"]}}
SCENES = {"world": "scenes", "values": {"categories": ["ball", "box"], "colour": ["red", "blue"], "size": ["small", "large"]}}


def onehot(idx, n):
    out = np.full((len(idx), n), -5.0)
    out[np.arange(len(idx)), idx] = 5.0
    return out


def test_birds_per_attribute_and_overall():
    heads = {"body_colour": onehot([0, 1, 0], 2), "pattern": onehot([1, 1, 0], 2)}
    mentions = [{"body_colour": "red", "pattern": "striped"},  # both right
                {"body_colour": "red"},                          # wrong colour
                {"pattern": "plain"}]                            # right
    r = faithfulness(heads, mentions, BIRDS)
    assert r["per_attribute"] == {"body_colour": 0.5, "pattern": 1.0}
    assert r["counts"] == {"body_colour": 2, "pattern": 2}
    assert r["overall"] == 0.75 and r["fully_faithful"] == pytest.approx(2 / 3)


def test_scenes_objects_colours_and_relations():
    n = 2
    heads = {
        "categories": np.array([[3.0, 3.0], [3.0, -3.0]]),  # image 1 lacks the box
        "colour": np.stack([onehot([0, 1], 2), onehot([1, 1], 2)]),  # B x C x colours
        "size": np.zeros((n, 2, 2)),
        "position": np.array([[[0.2, 0.5], [0.8, 0.5]], [[0.7, 0.5], [0.3, 0.5]]]),  # B x C x (x, y)
    }
    mentions = [
        {"objects": [{"category": "ball", "colour": "red"}, {"category": "box"}],
         "relations": [{"subject": 0, "relation": "left of", "object": 1}]},
        {"objects": [{"category": "ball", "colour": "red"}, {"category": "box"}],
         "relations": [{"subject": 0, "relation": "left of", "object": 1}]},
    ]
    r = faithfulness(heads, mentions, SCENES)
    assert r["per_attribute"]["object"] == 0.75
    assert r["per_attribute"]["colour"] == 0.5
    assert r["per_attribute"]["relation"] == 0.5
    assert r["fully_faithful"] == 0.5


def test_bad_input():
    heads = {"body_colour": onehot([0], 2), "pattern": onehot([0], 2)}
    with pytest.raises(MetricInputError, match="2 prompts"):
        faithfulness(heads, [{}, {}], BIRDS)
    with pytest.raises(MetricInputError, match="wing"):
        faithfulness(heads, [{"wing": "red"}], BIRDS)
    with pytest.raises(MetricInputError, match="green"):
        faithfulness(heads, [{"body_colour": "green"}], BIRDS)
    with pytest.raises(MetricInputError, match="no attribute"):
        faithfulness(heads, [{}], BIRDS)


def test_relation_to_unnamed_object_is_an_error():
    heads = {"categories": np.ones((1, 2)), "colour": np.zeros((1, 2, 2)), "size": np.zeros((1, 2, 2)),
             "position": np.zeros((1, 2, 2))}
    bad = [{"objects": [{"category": "ball"}], "relations": [{"subject": 0, "relation": "above", "object": 3}]}]
    with pytest.raises(MetricInputError, match="does not name"):
        faithfulness(heads, bad, SCENES)
