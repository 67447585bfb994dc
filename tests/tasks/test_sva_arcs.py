"""The SVA generator's dependency arcs: the same sentences as before, and a well-formed tree inside each input."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

from attnflow.heads.syntax import OUTPUT, parses_from_jsonl
from attnflow.tasks import sva

NOUN_MODIFIERS = {"det", "amod", "prep", "relcl"}


def test_recording_arcs_left_sentences_labels_and_seeds_unchanged():
    # the digest of these records, computed before the generator recorded arcs
    digest = hashlib.sha256()
    for split in ("train", "validation", "test", None):
        for example in sva.generate(150, split=split, seed=7):
            digest.update(json.dumps(example.to_record(), sort_keys=True).encode())
    assert digest.hexdigest() == "7a11be2a0c1e1b33268acda5e992bbaa0733f31e2a42e9acdbccd3779e48d657"


def test_every_input_word_has_at_most_one_head_and_the_agreement_link_is_the_subject():
    relations: Counter[str] = Counter()
    for example in sva.generate(400, split="test", seed=5):
        words = example.words
        heads: dict[int, int] = {}
        for head, dependent, relation in example.arcs:
            assert dependent not in heads, example.text
            heads[dependent] = head
            relations[relation] += 1
            if relation == "agreement":
                assert head == OUTPUT and dependent == example.subject
            elif relation in ("det", "amod"):
                assert sva.noun_number(words[head]) is not None and head > dependent, example.text
            elif relation == "pobj":
                assert sva.noun_number(words[dependent]) is not None and dependent > head, example.text
            elif relation in ("prep", "relcl"):
                assert sva.noun_number(words[head]) is not None, example.text
            assert relation in NOUN_MODIFIERS | {"agreement", "pobj", "nsubj", "dobj", "advmod", "mark"}
        # every noun has its determiner; no cycles (every chain of heads ends at a word without one)
        for position, word in enumerate(words):
            if sva.noun_number(word) is not None:
                assert any(h == position and r == "det" for h, _, r in example.arcs), example.text
            seen, node = set(), position
            while node in heads and node != OUTPUT:
                assert node not in seen, example.text
                seen.add(node)
                node = heads[node]
        # the verb of a relative clause agrees in number with its nsubj when it is a noun
        for head, dependent, relation in example.arcs:
            if relation == "nsubj" and sva.noun_number(words[dependent]) is not None:
                verb = words[head]
                forms = [f for f in sva._TRANSITIVE + sva._INTRANSITIVE if verb in f]
                if forms and verb != forms[0][2]:  # present tense
                    assert forms[0].index(verb) == sva.noun_number(words[dependent]), example.text
    for name in ("nsubj", "dobj", "amod", "advmod", "det", "prep", "pobj", "relcl", "agreement"):
        assert relations[name] > 0, name


def test_det_noun_prep_det_noun_as_in_the_keys_to_the_cabinet():
    found = [e for e in sva.generate(2000, seed=0) if len(e.words) == 5 and e.words[2] in sva._PREPOSITIONS
             and e.subject == 1 and sva.noun_number(e.words[4]) is not None]
    assert found
    for example in found:
        assert set(example.arcs) == {(1, 0, "det"), (1, 2, "prep"), (4, 3, "det"), (2, 4, "pobj"),
                                     (-1, 1, "agreement")}, example.text


def test_arcs_travel_in_records_and_json_lines(tmp_path):
    data = sva.generate(5, seed=2)
    path = sva.write_jsonl(data, tmp_path / "sva.jsonl", arcs=True)
    records = sva.read_jsonl(path)
    assert [[tuple(a) for a in r["arcs"]] for r in records] == [list(e.arcs) for e in data]
    back = [sva.SVAExample.from_record(r) for r in records]
    assert back == data and [b.arcs for b in back] == [e.arcs for e in data]
    assert [p.arcs for p in parses_from_jsonl(path)] == [e.arcs for e in data]
    assert "arcs" not in data[0].to_record()  # the default record is unchanged
