"""The subject-verb agreement generator: reproducible, disjoint splits, labels and positions right by construction."""

from __future__ import annotations

import pytest

from attnflow.errors import AttnflowError
from attnflow.tasks import sva


@pytest.fixture(scope="module")
def sample() -> list[sva.SVAExample]:
    return sva.generate(3000, split=None, seed=11)


def test_same_seed_same_data_other_seed_other_data() -> None:
    assert sva.generate(200, seed=3) == sva.generate(200, seed=3)
    assert sva.generate(200, seed=3) != sva.generate(200, seed=4)


def test_splits_are_disjoint_and_follow_the_hash() -> None:
    splits = sva.make_splits(2000, 300, 300, seed=5)
    sets = {name: {ex.words for ex in data} for name, data in splits.items()}
    assert {name: len(s) for name, s in sets.items()} == {"train": 2000, "validation": 300, "test": 300}
    assert sets["train"].isdisjoint(sets["validation"])
    assert sets["train"].isdisjoint(sets["test"])
    assert sets["validation"].isdisjoint(sets["test"])
    for name, data in splits.items():
        assert all(sva.split_of(ex.words) == name for ex in data)


def test_test_sentences_of_a_new_seed_are_never_training_sentences() -> None:
    train = {ex.words for ex in sva.generate(3000, split="train", seed=0)}
    fresh = sva.generate(500, split="test", seed=999)
    assert train.isdisjoint(ex.words for ex in fresh)


def test_label_is_the_number_of_the_subject(sample: list[sva.SVAExample]) -> None:
    for ex in sample:
        assert ex.label in (0, 1)
        assert sva.noun_number(ex.words[ex.subject]) == ex.label, ex.text


def test_attractors_are_exactly_the_later_nouns_of_the_other_number(sample: list[sva.SVAExample]) -> None:
    for ex in sample:
        expected = tuple(
            i for i in range(ex.subject + 1, len(ex.words)) if sva.noun_number(ex.words[i]) == 1 - ex.label
        )
        assert ex.attractors == expected, ex.text
        assert all(sva.noun_number(ex.words[a]) == 1 - ex.label for a in ex.attractors)


def test_the_data_has_attractors_and_both_labels_in_balance(sample: list[sva.SVAExample]) -> None:
    share = sum(ex.has_attractor for ex in sample) / len(sample)
    assert 0.3 < share < 0.8
    assert sum(ex.label for ex in sva.generate(1000, seed=1)) == 500


def test_lengths_stay_in_range(sample: list[sva.SVAExample]) -> None:
    lengths = [len(ex.words) for ex in sample]
    assert min(lengths) >= sva.MIN_WORDS and max(lengths) <= sva.MAX_WORDS
    assert max(lengths) >= 20  # long sentences do occur
    short = sva.generate(200, seed=2, min_words=6, max_words=8)
    assert all(6 <= len(ex.words) <= 8 for ex in short)


def test_no_duplicates_and_every_word_in_the_vocabulary(sample: list[sva.SVAExample]) -> None:
    assert len({ex.words for ex in sample}) == len(sample)
    vocabulary = set(sva.vocabulary())
    assert 200 <= len(vocabulary) <= 600
    assert all(set(ex.words) <= vocabulary for ex in sample)


def test_present_tense_verbs_agree_with_their_own_subject() -> None:
    """Object relative clauses: 'the dog that the cats chase' - the verb follows 'cats'."""
    singular = {forms[0]: 0 for forms in sva._TRANSITIVE} | {forms[1]: 1 for forms in sva._TRANSITIVE}
    checked = 0
    for ex in sva.generate(2000, seed=6):
        w = ex.words
        for i in range(len(w) - 3):
            # REL DET NOUN VERB (no adjective, no adverb)
            if w[i] in sva._RELATIVES and sva.noun_number(w[i + 2]) is not None and w[i + 3] in singular:
                assert singular[w[i + 3]] == sva.noun_number(w[i + 2]), ex.text
                checked += 1
    assert checked > 50


def test_records_round_trip(tmp_path) -> None:
    data = sva.generate(20, seed=8)
    path = sva.write_jsonl(data, tmp_path / "sva.jsonl")
    assert [sva.SVAExample.from_record(r) for r in sva.read_jsonl(path)] == data
    assert sva.read_jsonl(path)[0].keys() == {"text", "label", "subject", "attractors"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 5, "split": "dev"}, "'split'"),
        ({"n": -1}, "'n'"),
        ({"n": 5, "min_words": 9, "max_words": 3}, "min_words <= max_words"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(AttnflowError, match=message):
        sva.generate(**kwargs)
