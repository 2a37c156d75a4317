"""Molmo's conversations from pixmo-stream records (`pixmo_stream.molmo.formatting`).

The expected strings are derived by hand from Molmo v1's own code (``olmo/data/
data_formatter.py`` and ``pixmo_datasets.py``): roles ``"User: " + prompt + " Assistant:"``,
every message with a leading space (``always_start_with_space``), the style prefix put before
the first user message, points rounded by numpy's ``round`` on the stored floats and sorted by
``x * 10000 + y``. Templates are fixed to one entry each, so that the strings are exact.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import pixmo_fixtures as F
import pixmo_stream as ps
from pixmo_stream.ingest import convert
from pixmo_stream.ingest.text import points_text
from pixmo_stream.molmo.formatting import Annotation, Example, FormatError, Formatter
from pixmo_stream.molmo.rng import example_rng
from pixmo_stream.molmo.templates import default_templates

ONE = {
    "long_caption": ["Describe it."],
    "pointing": ["Point to {label}."],
    "point_count": ["How many {label}?"],
    "no_pointing": ["No points: "],
    "clocks": ["What time is it?"],
}


def rng(row: int = 0, epoch: int = 0, dataset: str = "d") -> np.random.Generator:
    return example_rng(1234, epoch, dataset, row)


def messages(example: Example) -> list[tuple[str, ...]]:
    return [a.messages for a in example.annotations]


def demo_forms(user: str, answer: str, style: str) -> set[tuple[str, str]]:
    """The two conversations a demo style can give: without the style prefix (90 %), with."""
    return {
        (f" User: {user} Assistant:", f" {answer}"),
        (f" User: {style}: {user} Assistant:", f" {answer}"),
    }


# ---------------------------------------------------------------------------------------------
# Points as text


def test_points_round_as_numpy_and_sort_by_molmo_key() -> None:
    # By hand, Molmo's rules: 45.65 (float64 45.64999...98) * 10 = 456.5 exactly in float64,
    # rounded half to even -> 456 -> "45.6"; 0.15 * 10 = 1.5 -> 2 -> "0.2" (Python's round
    # gives 0.1); 20.04 -> "20.0". Sorted by x * 10000 + y: (10.0, 5.0), (10.0, 20.0), (45.6, 0.2).
    pts = np.array([[45.65, 0.15], [10.0, 20.04], [10.0, 5.0]])
    assert points_text(pts, "cat") == (
        '<points x1="10.0" y1="5.0" x2="10.0" y2="20.0" x3="45.6" y3="0.2" alt="cat">cat</points>'
    )
    assert round(0.15, 1) == 0.1  # what a Python-rounding formatter would have written
    # Stored as float32, 45.65 is 45.650001525...: "45.7", as Molmo would print that value.
    assert 'x3="45.7"' in points_text(pts.astype(np.float32), "cat")
    # 99.95 * 10 = 999.5 -> 1000 (even); 0.05 * 10 = 0.5 -> 0 (Python's round: 0.1).
    assert (
        points_text(np.array([[99.95, 0.05]]), "a") == '<point x="100.0" y="0.0" alt="a">a</point>'
    )


def test_point_rounding_matches_molmo_expression_on_many_values() -> None:
    # Molmo writes f"{round(x, 1):0.1f}" with x a numpy float64: the oracle, value by value.
    values = np.random.default_rng(0).integers(0, 10001, 4000) / 100  # two decimals, 0-100
    pts = values.reshape(-1, 2)
    expected = sorted(
        ([round(x, 1), round(y, 1)] for x, y in pts), key=lambda p: p[0] * 10000 + p[1]
    )
    coords = " ".join(
        f'x{i}="{x:0.1f}" y{i}="{y:0.1f}"' for i, (x, y) in enumerate(expected, start=1)
    )
    assert points_text(pts, "o") == f'<points {coords} alt="o">o</points>'
    python_round = [f"{round(float(v), 1):0.1f}" for v in values]
    numpy_round = [f"{round(v, 1):0.1f}" for v in values]
    assert python_round != numpy_round  # the case this guards against exists in the sample


# ---------------------------------------------------------------------------------------------
# Each dataset's conversations


def test_pixmo_cap_long_caption_and_transcript() -> None:
    rec = {"captions": ["A cat on a mat."], "transcripts": [["um a cat", "so a cat, on a mat"]]}
    f = Formatter("pixmo-cap", templates=ONE)
    assert f.columns == ("captions",)
    for row in range(20):
        (conv,) = messages(f.format(rec, rng(row)))
        assert conv in demo_forms("Describe it.", "A cat on a mat.", "long_caption")
    t = Formatter("pixmo-cap", "transcript", templates=ONE)
    assert t.columns == ("captions", "transcripts")
    seen = set()
    for row in range(40):
        ex = t.format(rec, rng(row))
        assert ex.style == "transcript" and len(ex.annotations) == 2
        by_style = {a.messages[0].split()[1]: a.messages for a in ex.annotations}
        # The transcript has no prompt, and its style is not a demo style: always prefixed.
        transcript = by_style["transcript:"]
        assert transcript[0] == " User: transcript: Assistant:"
        seen.add(transcript[1])
    assert seen == {" um a cat", " so a cat, on a mat"}
    assert messages(t.bound(rec)) == [
        (" User: long_caption: Describe it. Assistant:", " A cat on a mat."),
        (" User: transcript: Assistant:", " so a cat, on a mat"),
    ]


def test_caption_pretraining_has_length_hints_and_no_roles() -> None:
    caption = "A long caption. " * 20  # 320 characters: hint 320 // 15 = 21 before noise
    f = Formatter("pixmo-cap", system_prompt="style_and_length", message_format="none")
    hints = []
    for row in range(2000):
        ((prompt, answer),) = messages(f.format({"captions": [caption]}, rng(row)))
        assert answer == " " + caption
        m = re.fullmatch(r" long_caption (-?\d*):", prompt)
        assert m, prompt
        hints.append(m.group(1))
    none = hints.count("") / len(hints)
    assert 0.08 < none < 0.12  # Molmo: "long_caption :" 10 % of the time
    values = np.array([int(h) for h in hints if h])
    # (n + int(N(0, 25))) // 15: flooring takes 0.5 off on average.
    assert abs(values.mean() - (320 / 15 - 0.5)) < 0.15
    assert 1.4 < values.std() < 1.9  # 25 / 15 = 1.67
    assert messages(f.bound({"captions": [caption]})) == [(" long_caption 28:", " " + caption)]


def test_ask_model_anything_how_many_questions_get_a_no_pointing_prefix() -> None:
    rec = {
        "questions": ["How many dogs are there?", "What is it?", "how many\ncats?"],
        "answers": ["Two.", "A dog.", "One."],
    }
    f = Formatter("pixmo-ask-model-anything", templates=ONE, system_prompt="none")
    got = sorted(messages(f.format(rec, rng())))
    assert got == sorted(
        [
            (" User: No points: How many dogs are there? Assistant:", " Two."),
            (" User: What is it? Assistant:", " A dog."),
            # Molmo's test is re.fullmatch("how many.*", q.lower()): "." stops at a newline.
            (" User: how many\ncats? Assistant:", " One."),
        ]
    )
    assert Formatter("pixmo-ask-model-anything").style == "user_qa"


def test_cap_qa_keeps_each_turn_and_prefixes_its_own_question() -> None:
    rec = {"conversations": [["What is it?", "A cat.", "How many cats?", "Two.", "Why?"]]}
    f = Formatter("pixmo-cap-qa", templates=ONE)
    for row in range(10):
        assert messages(f.format(rec, rng(row))) == [
            (
                " User: synthetic_qa: What is it? Assistant:",
                " A cat.",
                # v1 wrote the prefix before the *first* question here ("No points: What is
                # it?"): not reproduced. The unanswered last question is dropped.
                " User: No points: How many cats? Assistant:",
                " Two.",
            )
        ]


@pytest.mark.parametrize("dataset", ["pixmo-points", "pixmo-points-eval", "pixmo-count"])
def test_pointing_and_counting_styles_as_given_never_swapped(dataset: str) -> None:
    rec = {
        "labels": ["Cat", "hat"],
        "points": [np.array([[50.0, 20.0], [10.0, 5.0]]), np.zeros((0, 2))],
        # v1 chose the style from the dataset entry, swapped; the data's collection method
        # does not choose it either.
        "collection_methods": ["counting", "pointing"],
    }
    tags = '<points x1="10.0" y1="5.0" x2="50.0" y2="20.0" alt="cat">cat</points>'
    pointing = Formatter(dataset, "pointing", templates=ONE, system_prompt="none")
    assert pointing.columns == ("labels", "points")
    assert sorted(messages(pointing.format(rec, rng()))) == [
        (" User: Point to cat. Assistant:", f" {tags}"),
        (" User: Point to hat. Assistant:", " There are none."),
    ]
    counting = Formatter(dataset, "counting", templates=ONE, system_prompt="none")
    assert counting.style == "point_count"
    assert sorted(messages(counting.format(rec, rng()))) == [
        (" User: How many cat? Assistant:", f" Counting the {tags} shows a total of 2."),
        (" User: How many hat? Assistant:", " There are none."),
    ]
    one = {"labels": ["Dog"], "points": [np.array([[1.0, 2.0]])]}
    prefixed = Formatter(dataset, "point_count", templates=ONE)
    assert messages(prefixed.bound(one)) == [
        (
            " User: point_count: How many dog? Assistant:",
            ' Counting the <point x="1.0" y="2.0" alt="dog">dog</point> shows a total of 1.',
        )
    ]
    # Without templates (Molmo's prompt_templates="none") the prompt is the label.
    bare = Formatter(dataset, "pointing", system_prompt="none", prompt_templates="none")
    assert messages(bare.format(one, rng())) == [
        (" User: dog Assistant:", ' <point x="1.0" y="2.0" alt="dog">dog</point>')
    ]


def test_point_explanations_replace_placeholders_with_point_tags() -> None:
    rec = {
        "questions": ["Where are the cats?", "And dogs?"],
        "parsed_responses": ["I see <|POINT|> and <|POINT|>.", None],
        "alt_texts": [["Cats", "mat"], []],
        "inline_texts": [["two cats", "a mat"], []],
        "point_groups": [[np.array([[30.0, 40.0], [10.0, 20.0]]), np.array([[5.0, 5.0]])], []],
    }
    f = Formatter("pixmo-point-explanations")
    assert f.style == "point_qa"
    assert messages(f.format(rec, rng())) == [
        (
            " User: point_qa: Where are the cats? Assistant:",
            ' I see <points x1="10.0" y1="20.0" x2="30.0" y2="40.0" alt="Cats">two cats</points>'
            ' and <point x="5.0" y="5.0" alt="mat">a mat</point>.',
        )
    ]  # the null parsed response is not trained on, as in Molmo
    bad = dict(rec, parsed_responses=["only <|POINT|> here", None])
    with pytest.raises(FormatError, match="fewer <.POINT.> placeholders than its 2 point groups"):
        f.format(bad, rng())


def test_docs_are_always_prefixed_with_their_type() -> None:
    rec = {"questions": ["What is the total?"], "answers": ["42"]}
    f = Formatter("pixmo-docs", "charts")
    assert f.style == "pixmo_docs_charts"
    for row in range(30):
        assert messages(f.format(rec, rng(row))) == [
            (" User: pixmo_docs_charts: What is the total? Assistant:", " 42")
        ]
    with pytest.raises(ValueError, match="pixmo-docs needs a style"):
        Formatter("pixmo-docs")


def test_clocks_ask_the_time_from_the_rendering_metadata(tmp_path: Path) -> None:
    f = Formatter("pixmo-clocks", templates=ONE)
    q = " User: clocks: What time is it? Assistant:"
    assert f.columns == ("text",)  # the published answer
    assert messages(f.format({"text": "7:57:39 AM"}, rng())) == [(q, " 7:57:39 AM")]
    # Without the published `text`, the answer is written from the time fields.
    convert(str(F.pixmo_clocks(tmp_path / "c.parquet", False)), str(tmp_path / "o"),
            preset="pixmo-clocks")  # fmt: skip
    a, b = ps.Dataset(str(tmp_path / "o"))
    assert messages(f.format(a, rng())) == [(q, " 10:08:30 AM")]
    assert messages(f.format(b, rng())) == [(q, " 11:59")]


def test_message_format_none_and_first_space() -> None:
    rec = {"questions": ["Q?"], "answers": ["A."]}
    f = Formatter(
        "pixmo-docs", "other", message_format="none", system_prompt="none",
        always_start_with_space=False,
    )  # fmt: skip
    assert messages(f.format(rec, rng())) == [("Q?", " A.")]


# ---------------------------------------------------------------------------------------------
# Points precision, from the published files through convert


def test_converted_points_keep_the_published_float64(tmp_path: Path) -> None:
    image = F.jpeg(40, 30)
    row = dict(image_url=F.url(0), image_sha256=F.sha(image), label="cat",
               points=[{"x": 45.65, "y": 0.15}], count=1, collection_method="pointing")  # fmt: skip
    rows = [row]
    schema = pa.schema([("image_url", pa.string()), ("image_sha256", pa.string()),
                        ("label", pa.string()), ("points", pa.list_(F.XY)),
                        ("count", pa.int64()), ("collection_method", pa.string())])  # fmt: skip
    parquet = F.write(pa.Table.from_pylist(rows, schema=schema), tmp_path / "p.parquet")
    cache = F.write_cache(tmp_path / "cache", {F.url(0): image})
    convert(str(parquet), str(tmp_path / "o"), preset="pixmo-points", images=str(cache))
    (rec,) = ps.Dataset(str(tmp_path / "o"))
    assert rec["points"][0].dtype == np.float64 and rec["points"][0].tolist() == [[45.65, 0.15]]
    f = Formatter("pixmo-points", system_prompt="none", templates=ONE)
    want = [(" User: Point to cat. Assistant:", ' <point x="45.6" y="0.2" alt="cat">cat</point>')]
    assert messages(f.format(rec, rng())) == want
    # A dataset written when points were float32 still formats (upcast): 45.65 reads 45.7.
    old = dict(rec, points=[p.astype(np.float32) for p in rec["points"]])
    assert 'x="45.7"' in messages(f.format(old, rng()))[0][1]


def test_count_points_are_normalised_and_rounded_as_molmo_does(tmp_path: Path) -> None:
    # Molmo's pixmo-count keeps the published float32 pixels, divides them in place by
    # (w / 100, h / 100) (a float64 quotient stored back in float32), and rounds in float32.
    # x = 71.3 px of a 200 px wide image: float32(71.3) / 2 = 35.650001525878906; in float64
    # that rounds to "35.7", but Molmo's float32 35.65 * 10 rounds to 356.5 -> "35.6".
    image = F.jpeg(200, 100)
    rows = [dict(image_url=F.url(0), image_sha256=F.sha(image), count=1, label="Dot",
                 points={"x": [71.3], "y": [50.0]})]  # fmt: skip
    xy = pa.struct([("x", pa.list_(pa.float32())), ("y", pa.list_(pa.float32()))])
    schema = pa.schema([("image_url", pa.string()), ("image_sha256", pa.string()),
                        ("count", pa.int32()), ("points", xy), ("label", pa.string())])  # fmt: skip
    parquet = F.write(pa.Table.from_pylist(rows, schema=schema), tmp_path / "c.parquet")
    cache = F.write_cache(tmp_path / "cache", {F.url(0): image})
    convert(str(parquet), str(tmp_path / "o"), preset="pixmo-count", images=str(cache))
    (rec,) = ps.Dataset(str(tmp_path / "o"))
    assert rec["points"][0].tolist() == [[float(np.float32(71.3)) / 2.0, 50.0]]
    got = messages(Formatter("pixmo-count", system_prompt="none", templates=ONE).format(rec, rng()))
    assert got == [
        (" User: Point to dot. Assistant:", ' <point x="35.6" y="50.0" alt="dot">dot</point>')
    ]
    # The same percent value in pixmo-points (float64, as published there) reads 35.7.
    pts = Formatter("pixmo-points", system_prompt="none", templates=ONE).format(rec, rng())
    assert 'x="35.7"' in messages(pts)[0][1]


# ---------------------------------------------------------------------------------------------
# Randomness: a pure function of (seed, epoch, dataset, row)

POINTS_RECORD = {
    "labels": [f"thing {i}" for i in range(8)],
    "points": [np.full((i % 3, 2), 10.0 * i) for i in range(8)],
}


def test_same_key_same_example_other_epoch_other_draws() -> None:
    f = Formatter("pixmo-points", "pointing")
    a = f.format(POINTS_RECORD, example_rng(7, 3, "pixmo-points", 11))
    b = f.format(POINTS_RECORD, example_rng(7, 3, "pixmo-points", 11))
    assert a == b and isinstance(a.annotations[0], Annotation)
    others = [
        example_rng(7, 4, "pixmo-points", 11),  # next epoch
        example_rng(7, 3, "pixmo-points", 12),  # next row
        example_rng(7, 3, "pixmo-count", 11),  # another dataset
        example_rng(8, 3, "pixmo-points", 11),  # another seed
    ]
    for g in others:
        assert f.format(POINTS_RECORD, g) != a
    # The annotations are shuffled, every label exactly once.
    answers = [m[1] for m in messages(f.format(POINTS_RECORD, others[0]))]
    assert answers != [m[1] for m in messages(a)]
    assert sorted(answers) == sorted(m[1] for m in messages(a))
    with pytest.raises(ValueError, match="row must be a non-negative integer"):
        example_rng(0, 0, "d", -1)


def test_a_formatter_pickles_for_spawned_workers() -> None:
    f = Formatter("pixmo-points", "counting", templates=ONE)
    g = pickle.loads(pickle.dumps(f))
    assert g.columns == f.columns and g.style == "point_count"
    assert g.format(POINTS_RECORD, rng(3)) == f.format(POINTS_RECORD, rng(3))


def test_style_prefix_frequencies() -> None:
    qa = {"questions": ["Q?"], "answers": ["A."]}
    demo = Formatter("pixmo-ask-model-anything")
    kept = sum(
        messages(demo.format(qa, rng(row)))[0][0].startswith(" User: user_qa: ")
        for row in range(4000)
    )
    assert 0.08 < kept / 4000 < 0.12  # Molmo keeps a demo style's prefix 10 % of the time
    other = Formatter("pixmo-cap-qa")
    conv = {"conversations": [["Q?", "A."]]}
    assert all(
        messages(other.format(conv, rng(row)))[0][0] == " User: synthetic_qa: Q? Assistant:"
        for row in range(200)
    )
    plain = Formatter("pixmo-docs", "tables", system_prompt="none")
    assert messages(plain.format(qa, rng())) == [(" User: Q? Assistant:", " A.")]


# ---------------------------------------------------------------------------------------------
# Templates


def test_templates_from_json_replace_the_shipped_lists(tmp_path: Path) -> None:
    path = tmp_path / "prompts.json"
    # A file of Molmo's lists as released: styles that are not templated here are ignored.
    path.write_text(json.dumps({"pointing": ["Find {label}!"], "short_answer": ["{question}"]}))
    f = Formatter("pixmo-points", "pointing", templates=str(path), system_prompt="none")
    one = {"labels": ["Cat"], "points": [np.zeros((0, 2))]}
    assert messages(f.format(one, rng())) == [(" User: Find cat! Assistant:", " There are none.")]
    # The styles the file does not name keep the shipped lists.
    assert f.templates["point_count"] == default_templates()["point_count"]
    assert all(len(v) >= 5 for v in default_templates().values())
    path.write_text(json.dumps({"pointing": ["Find it!"]}))
    with pytest.raises(ValueError, match=r"prompts\.json: templates\['pointing'\]\[0\] has no"):
        Formatter("pixmo-points", templates=path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"prompts\.json: cannot read prompt templates"):
        Formatter("pixmo-points", templates=path)


def test_shipped_templates_are_drawn_uniformly() -> None:
    f = Formatter("pixmo-points", "point_count", system_prompt="none")
    one = {"labels": ["cat"], "points": [np.zeros((0, 2))]}
    prompts = {messages(f.format(one, rng(row)))[0][0] for row in range(600)}
    assert len(prompts) == len(default_templates()["point_count"])


# ---------------------------------------------------------------------------------------------
# bound() is at least as long as any draw

RECORDS = {
    ("pixmo-cap", "transcript"): {
        "captions": ["A cat.", "A dog on a very long mat."],
        "transcripts": [["a", "a cat sitting there"], ["dog"]],
    },
    ("pixmo-ask-model-anything", None): {
        "questions": ["How many cats?", "Why?"],
        "answers": ["Two.", "Because."],
    },
    ("pixmo-cap-qa", None): {"conversations": [["How many?", "3", "how many more?", "4"]]},
    ("pixmo-points", "pointing"): POINTS_RECORD,
    ("pixmo-count", "point_count"): POINTS_RECORD,
    ("pixmo-clocks", None): {"text": "10:08"},
}


@pytest.mark.parametrize("system_prompt", ["demo_or_style", "style_and_length"])
@pytest.mark.parametrize(("dataset", "style"), list(RECORDS))
def test_bound_is_never_shorter_than_a_draw(dataset, style, system_prompt) -> None:
    f = Formatter(dataset, style, system_prompt=system_prompt)
    record = RECORDS[(dataset, style)]

    def lengths(ex: Example) -> list[int]:
        return sorted(sum(len(m) for m in a.messages) for a in ex.annotations)

    bound = lengths(f.bound(record))
    for row in range(150):
        drawn = lengths(f.format(record, rng(row)))
        assert len(drawn) == len(bound)
        assert all(d <= b for d, b in zip(drawn, bound, strict=True)), (row, drawn, bound)


# ---------------------------------------------------------------------------------------------
# Errors


def test_bad_arguments_and_records_are_named() -> None:
    with pytest.raises(ValueError, match="no conversation format for dataset 'pixmo-nope'"):
        Formatter("pixmo-nope")
    with pytest.raises(ValueError, match="pixmo-points has no style 'caption'"):
        Formatter("pixmo-points", "caption")
    with pytest.raises(ValueError, match="system_prompt must be one of"):
        Formatter("pixmo-cap", system_prompt="style")
    with pytest.raises(FormatError, match=r"pixmo-points record has no column 'labels'"):
        Formatter("pixmo-points").format({"points": []}, rng())
    with pytest.raises(FormatError, match=r"points\[0\] is not \(N, 2\) points"):
        Formatter("pixmo-points").format({"labels": ["a"], "points": [[1.0, 2.0, 3.0]]}, rng())
    assert Formatter("pixmo-cap").format({"captions": []}, rng()).annotations == ()
