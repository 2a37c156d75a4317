"""The user prompts that templated styles draw from: pixmo-stream's own lists, or yours.

Styles with templates (as in Molmo, only the demo styles that have no question of their
own are templated, plus the prefixes of "how many" questions and the clock question):

``long_caption``  caption requests
``pointing``      pointing requests, with ``{label}``
``point_count``   counting requests, with ``{label}``
``no_pointing``   prefixes put before a "how many ..." question (so that the model answers it
                  in words, not with points); each ends with its own separator
``clocks``        time questions

``templates=`` takes a mapping (style -> list of strings) or the path of a JSON file holding
one; each style it names replaces the shipped list, the others keep theirs. Keys that are no
style here are ignored, so a file of Molmo's released prompt lists (``GENERAL_PROMPTS_V1``,
with ``NO_POINT_PREFIX`` under ``no_pointing``) can be given as it is.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

#: The keywords every template of a style must contain.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "long_caption": (),
    "pointing": ("label",),
    "point_count": ("label",),
    "no_pointing": (),
    "clocks": (),
}

Templates = dict[str, tuple[str, ...]]


@functools.cache
def default_templates() -> Templates:
    """pixmo-stream's shipped lists (``pixmo_stream/molmo/templates/<style>.json``)."""
    folder = resources.files(__package__) / "templates"
    out = {}
    for style in KEYWORDS:
        text = (folder / f"{style}.json").read_text(encoding="utf-8")
        out[style] = _checked(style, json.loads(text), f"the shipped {style}.json")
    return out


def _checked(style: str, value: Any, source: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"{source}: templates[{style!r}] must be a non-empty list of strings")
    for i, t in enumerate(value):
        if not isinstance(t, str):
            raise ValueError(f"{source}: templates[{style!r}][{i}] is not a string: {t!r}")
        for word in KEYWORDS[style]:
            if "{" + word + "}" not in t:
                raise ValueError(f"{source}: templates[{style!r}][{i}] has no {{{word}}}: {t!r}")
    return tuple(value)


def load_templates(templates: Mapping[str, Sequence[str]] | str | os.PathLike | None) -> Templates:
    """The shipped lists, with the styles that ``templates`` names replaced."""
    out = dict(default_templates())
    if templates is None:
        return out
    source = "templates"
    if isinstance(templates, str | os.PathLike):
        source = os.fspath(templates)
        try:
            with open(source, encoding="utf-8") as f:
                templates = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{source}: cannot read prompt templates: {e}") from e
    if not isinstance(templates, Mapping):
        raise ValueError(f"{source}: templates must map a style to a list of strings")
    for style, value in templates.items():
        if style in KEYWORDS:
            out[style] = _checked(style, value, source)
    return out


def fill(template: str, **values: str) -> str:
    """``template`` with each ``{name}`` replaced by its value (no other brace is special)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template
