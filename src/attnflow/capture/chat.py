"""Chat prompts: a text wrapped in the tokenizer's own chat template, its template tokens marked as special.

An instruct model (the bundled ``smollm2``) is prompted through its chat template:
the user's text becomes one user turn, followed by the prompt that opens the
assistant's turn. :func:`with_chat` gives a :class:`~attnflow.capture.LoadedModel`
whose texts are encoded that way everywhere in attnflow (capture, explain,
generation, gradients, word groups). The template's tokens are scored like any
other, and marked as special tokens (:func:`special_tokens_mask`), so tables, JSON
and reports show them as such.

The template is rendered once around a placeholder and split there: the prompt's
ids are the template's ids before the text, the text's own ids, and the template's
ids after it, so the text's tokens are exactly those of the text alone.

Examples
--------
>>> from attnflow.capture import load_model
>>> with_chat(load_model())  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
attnflow.errors.AttnflowError: --chat needs a tokenizer with a chat template; the model 'minilm' has none ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import AttnflowError

#: Two placeholders: the template is rendered around each, and must differ only there.
_PLACEHOLDERS = ("\ue000attnflow-text-a\ue000", "\ue000attnflow-text-b\ue000")


@dataclass(frozen=True)
class ChatTemplate:
    """The ids of a chat template before and after the user's text (one user turn, then the assistant's prompt)."""

    before: tuple[int, ...]
    after: tuple[int, ...]

    def wrap(self, ids: Sequence[int]) -> list[int]:
        """The prompt's ids: the template around ``ids`` (the text's own ids, no special tokens added).

        Examples
        --------
        >>> ChatTemplate((1, 2), (3,)).wrap([7, 8])
        [1, 2, 7, 8, 3]
        """
        return [*self.before, *(int(i) for i in ids), *self.after]

    def positions(self, ids: Sequence[int]) -> list[bool]:
        """Which of ``ids`` (a wrapped prompt, maybe followed by generated ids) are the template's.

        The leading ``before`` ids, and the first ``after`` sequence past them.

        Examples
        --------
        >>> ChatTemplate((1, 2), (3, 4)).positions([1, 2, 7, 3, 4, 9])
        [True, True, False, True, True, False]
        """
        ids = [int(i) for i in ids]
        marked = [False] * len(ids)
        start = len(self.before) if ids[: len(self.before)] == list(self.before) else 0
        for i in range(start):
            marked[i] = True
        width = len(self.after)
        for i in range(start, len(ids) - width + 1):
            if width and ids[i : i + width] == list(self.after):
                marked[i : i + width] = [True] * width
                break
        return marked


def chat_template(loaded: Any) -> ChatTemplate:
    """The :class:`ChatTemplate` of ``loaded``'s tokenizer; one clear error when it has no chat template."""
    tokenizer = getattr(loaded, "tokenizer", None)
    name = getattr(loaded, "name", "?")
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise AttnflowError(
            f"--chat needs a tokenizer with a chat template; the model {name!r} has none (give a chat or instruct "
            "model, e.g. --model smollm2, or leave --chat out)."
        )
    rendered = []
    for placeholder in _PLACEHOLDERS:
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": placeholder}], tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # a template that fails to render (jinja errors, missing roles)
            raise AttnflowError(f"The chat template of the model {name!r} failed to render: {exc}") from None
        rendered.append(str(text))
    (first, second), (a, b) = rendered, _PLACEHOLDERS
    if first.count(a) != 1 or first.replace(a, b) != second:
        raise AttnflowError(
            f"The chat template of the model {name!r} does not place the text as it is in the prompt; attnflow "
            "cannot tell its tokens from the template's. Leave --chat out and write the prompt yourself."
        )
    before, after = first.split(a)

    def ids(part: str) -> tuple[int, ...]:
        return tuple(int(i) for i in tokenizer(part, add_special_tokens=False)["input_ids"]) if part else ()

    return ChatTemplate(ids(before), ids(after))


def with_chat(loaded: Any) -> Any:
    """``loaded`` (a :class:`~attnflow.capture.LoadedModel`) whose texts are wrapped in its chat template."""
    return loaded if loaded.chat is not None else replace(loaded, chat=chat_template(loaded))


def special_tokens_mask(loaded: Any, ids: Sequence[int]) -> list[int]:
    """1 for each of ``ids`` that is a special token of ``loaded``'s tokenizer or, with a chat template, the template's.

    ``loaded`` may also be a bare tokenizer (no template then).

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> special_tokens_mask(load_model(), [101, 7592, 102])
    [1, 0, 1]
    """
    tokenizer = getattr(loaded, "tokenizer", loaded)
    ids = [int(i) for i in ids]
    mask = [int(m) for m in tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)]
    chat = getattr(loaded, "chat", None)
    if chat is not None:
        mask = [int(m or t) for m, t in zip(mask, chat.positions(ids), strict=True)]
    return mask
