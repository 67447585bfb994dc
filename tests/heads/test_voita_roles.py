"""Voita et al.'s role definitions on hand-made attention whose answers are known, and on parses."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnflow.errors import AttnflowError
from attnflow.heads import HeadReport, roles, syntax

N = 10


def _pointing(targets: list[int], n: int = N, peak: float = 0.6) -> np.ndarray:
    """An (n, n) attention whose query q puts ``peak`` on ``targets[q]`` and spreads the rest evenly."""
    a = np.full((n, n), (1 - peak) / (n - 1))
    a[np.arange(n), targets] = peak
    return a


def _previous(share: float, n: int = N) -> np.ndarray:
    """Maximum on the previous token for ``round(share * (n - 1))`` of the queries 1..n-1, on itself otherwise."""
    hits = round(share * (n - 1))
    return _pointing([0] + [q - 1 if q <= hits else q for q in range(1, n)], n)


def test_positional_heads_need_ninety_percent_of_maxima_on_one_adjacent_token():
    following = _pointing([min(q + 1, N - 1) for q in range(N)])
    uniform = np.full((N, N), 1 / N)  # ties: the first key, i.e. token 0
    heads = np.stack([_previous(1.0), _previous(8 / 9), following, uniform])[None]
    previous, after = roles.adjacent_max_share(heads, -1), roles.adjacent_max_share(heads, +1)
    np.testing.assert_allclose(previous[0], [1.0, 8 / 9, 0.0, 1 / 9])
    np.testing.assert_allclose(after[0], [0.0, 0.0, 1.0, 0.0])
    assert roles.positional_labels(previous, after).tolist() == [["previous", "", "next", ""]]
    assert roles.positional_labels(previous, after, threshold=0.85).tolist() == [["previous", "previous", "next", ""]]


def test_shares_and_maxima_disagree_where_voita_and_the_old_scores_differ():
    # 40 % of every query's weight on the previous token, the rest evenly: the maximum always points there
    # (a positional head for Voita et al.) although the share is below the old 0.5 threshold.
    a = np.full((N, N), 0.6 / (N - 1))
    a[np.arange(1, N), np.arange(N - 1)] = 0.4
    a[0] = 1 / N
    a = a[None, None]
    assert roles.adjacent_max_share(a, -1)[0, 0] == 1.0
    assert roles.previous_token_share(a)[0, 0] == pytest.approx(0.4)
    assert roles.role_labels(roles.role_scores(a)).tolist() == [[""]]


def test_rare_word_head_points_to_the_least_frequent_token():
    tokens = ["[CLS]", "the", "aardvark", "ate", "the", "ants", "[SEP]"]
    counts = {"the": 100, "ate": 10, "ants": 5, "aardvark": 1}
    rare = roles.rarest_position(tokens, counts, (0, 6))
    assert rare == 2
    n = len(tokens)
    rare_head = _pointing([2] * 6 + [6], n)  # 6 of 7 queries' maxima on the aardvark
    other = _pointing([0] * n, n)
    a = np.stack([rare_head, other])[None]
    np.testing.assert_allclose(roles.max_share_on(a, rare)[0], [6 / 7, 0.0])
    report = HeadReport(np.ones((1, 2)), *[np.zeros((1, 2))] * 5, previous_max=np.zeros((1, 2)),
                        next_max=np.zeros((1, 2)), rare_max=roles.max_share_on(a, rare))
    assert report.roles.tolist() == [["rare", ""]]
    assert HeadReport(**{**report.__dict__, "rare_threshold": 0.9}).roles.tolist() == [["", ""]]
    assert np.isnan(roles.max_share_on(a, None)).all()


def _det_parses() -> tuple[list[syntax.Parse], list[np.ndarray]]:
    """Sentences 'DET NOUN VERB' and 'DET ADJ NOUN VERB' (no special tokens: word i is token i).

    Head 0 points every word to its syntactic head (the verb to itself);
    head 1 always points to the next token (the positional baseline for det arcs in three
    of four sentences); head 2 to token 0.
    """
    short = syntax.Parse(("the", "dog", "sleeps"), ((1, 0, "det"), (2, 1, "nsubj")))
    long = syntax.Parse(("the", "old", "dog", "sleeps"), ((2, 0, "det"), (2, 1, "amod"), (3, 2, "nsubj")))
    parses = [short, short, short, long]
    attentions = []
    for parse in parses:
        n = len(parse.words)
        syntactic = list(range(n))
        for head, dependent, _ in parse.arcs:
            syntactic[dependent] = head
        nxt = [min(q + 1, n - 1) for q in range(n)]
        attentions.append(np.stack([_pointing(syntactic, n), _pointing(nxt, n), _pointing([0] * n, n)])[None])
    return parses, attentions


def test_syntactic_accuracy_and_the_most_frequent_offset_baseline_by_hand():
    parses, attentions = _det_parses()
    counter = syntax.SyntacticCounter()
    for parse, a in zip(parses, attentions, strict=True):
        words = [(i,) for i in range(len(parse.words))]
        counter.add(a, syntax.token_arcs(parse, words, output_position=0))
    scores = counter.scores()
    det = scores["det"]
    assert det.n_arcs == 4
    # dependent -> head: offsets +1, +1, +1, +2 -> baseline offset +1, right 3 times of 4
    assert det.offset == {"dependent->head": 1, "head->dependent": -1}
    assert det.baseline == {"dependent->head": 0.75, "head->dependent": 0.75}
    np.testing.assert_allclose(det.accuracy["dependent->head"][0], [1.0, 0.75, 0.0])  # the det points to itself
    np.testing.assert_allclose(det.accuracy["head->dependent"][0], [0.0, 0.0, 1.0])  # token 0 is the det
    np.testing.assert_allclose(det.gain()[0], [0.25, 0.0, 0.25])
    assert det.is_syntactic(0.1).tolist() == [[True, False, True]]
    assert det.is_syntactic(0.3).tolist() == [[False, False, False]]
    z = np.zeros((1, 3))
    report = HeadReport(z, z, z, z, z, z, syntactic=scores)
    assert report.syntactic_heads("det") == [(1, 1), (1, 3)]
    assert report.roles[0, 0].split(",")[0] in {"det", "nsubj", "amod"} and "det" in report.roles[0, 0]
    assert "det" not in report.roles[0, 1]
    with pytest.raises(AttnflowError, match="not scored"):
        report.syntactic_heads("xcomp")


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 8), st.integers(0, 2**32 - 1))
def test_a_head_that_always_points_to_the_baseline_offset_gains_nothing(n, seed):
    """Property: on random arcs, a head pointing exactly along the relation's most frequent offset scores the
    baseline, and accuracies and baselines are shares in [0, 1]."""
    rng = np.random.default_rng(seed)
    counter = syntax.SyntacticCounter()
    records = []
    for _ in range(5):
        dependent = int(rng.integers(0, n))
        head = int(rng.choice([i for i in range(n) if i != dependent]))
        records.append((head, dependent))
    offsets = [h - d for h, d in records]
    best = min(set(offsets), key=lambda o: (-offsets.count(o), abs(o), o))
    for head, dependent in records:
        targets = [q + best if 0 <= q + best < n else q for q in range(n)]  # else itself: never the other word
        a = _pointing(targets, n)[None, None]
        counter.add(a, [("rel", (head,), (dependent,))])
    scores = counter.scores()["rel"]
    accuracy = scores.accuracy["dependent->head"][0, 0]
    assert scores.offset["dependent->head"] == best
    assert accuracy == pytest.approx(scores.baseline["dependent->head"])
    assert 0 <= scores.baseline["head->dependent"] <= 1


def test_words_meet_subword_tokens_through_character_offsets():
    text = "the aardvarks sleep"
    offsets = [(0, 0), (0, 3), (4, 8), (8, 13), (14, 19), (0, 0)]
    words = syntax.word_tokens(text, ["the", "aardvarks", "sleep"], offsets)
    assert words == [(1,), (2, 3), (4,)]
    arcs = syntax.token_arcs(syntax.Parse(("the", "aardvarks", "sleep"), ((1, 0, "det"), (-1, 1, "agreement"))),
                             words, 0)
    assert arcs == [("det", (2, 3), (1,), False), ("agreement", (0,), (2, 3), True)]
    with pytest.raises(AttnflowError, match="not in the text"):
        syntax.word_tokens(text, ["the", "cat"], offsets)
    cut = offsets[:3]  # truncated after "aard": "sleep" has no token left
    with pytest.raises(AttnflowError, match="covers no token"):
        syntax.word_tokens(text, ["the", "aardvarks", "sleep"], cut)
    words = syntax.word_tokens(text, ["the", "aardvarks", "sleep"], cut, allow_missing=True)
    assert words == [(1,), (2,), ()]
    parse = syntax.Parse(("the", "aardvarks", "sleep"), ((1, 0, "det"), (2, 1, "nsubj")))
    assert syntax.token_arcs(parse, words, 0) == [("det", (2,), (1,), False)]


def test_conllu_reader_skips_ranges_and_reports_bad_lines(tmp_path):
    good = tmp_path / "good.conllu"
    good.write_text(
        "# sent_id = 1\n# text = Don't go\n1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "1\tDo\tdo\tAUX\t_\t_\t3\taux\t_\t_\n2\tn't\tnot\tPART\t_\t_\t3\tadvmod\t_\t_\n"
        "3\tgo\tgo\tVERB\t_\t_\t0\troot\t_\t_\n\n"
        "1\tDogs\tdog\tNOUN\t_\t_\t2\tnsubj\t_\t_\n2\tbark\tbark\tVERB\t_\t_\t0\troot\t_\t_\n"
    )
    parses = syntax.read_conllu(good)
    assert [p.words for p in parses] == [("Do", "n't", "go"), ("Dogs", "bark")]
    assert parses[0].arcs == ((2, 0, "aux"), (2, 1, "advmod")) and parses[1].relations == ("nsubj",)
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tDogs\tdog\n")
    with pytest.raises(AttnflowError, match="line 1: a CoNLL-U word line has 10 tab-separated fields"):
        syntax.read_conllu(bad)
    bad.write_text("1\tDogs\tdog\tNOUN\t_\t_\t7\tnsubj\t_\t_\n")
    with pytest.raises(AttnflowError, match="HEAD 7 is not a word"):
        syntax.read_conllu(bad)
    bad.write_text("\n\n")
    with pytest.raises(AttnflowError, match="holds no sentence"):
        syntax.read_conllu(bad)


def test_records_without_arcs_and_unknown_relations_get_one_line():
    with pytest.raises(AttnflowError, match="Record 1 of the data has no 'arcs' field"):
        syntax.parses_from_records([{"text": "a b", "arcs": [[1, 0, "det"]]}, {"text": "c"}])
    with pytest.raises(AttnflowError, match="does not fit a sentence of 2 words"):
        syntax.parses_from_records([{"text": "a b", "arcs": [[5, 0, "det"]]}])
    with pytest.raises(AttnflowError, match="'xcomp' does not occur in the dependencies; they have: det, obj"):
        syntax.resolve_relations(["xcomp"], ["det", "obj"])


def test_spacy_adapter_and_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy -> ImportError
    with pytest.raises(AttnflowError, match=r"pip install 'attnflow\[syntax\]'"):
        syntax.spacy_parses(["Dogs bark."])

    class Token:
        def __init__(self, doc, i, text, head, dep):
            self.doc, self.i, self.text, self._head, self.dep_ = doc, i, text, head, dep

        @property
        def head(self):
            return self.doc[self._head]

    class Pipeline:  # stands in for a loaded spaCy pipeline: a parser's output for one fixed sentence
        pipe_names = ["tok2vec", "parser"]

        def __call__(self, text):
            doc: list[Token] = []
            for i, (word, head, dep) in enumerate([("Dogs", 1, "nsubj"), ("bark", 1, "ROOT"), (".", 1, "punct")]):
                doc.append(Token(doc, i, word, head, dep))
            return doc

    def load(name):
        if name != "en_core_web_sm":
            raise OSError(f"[E050] Can't find model '{name}'.")
        return Pipeline()

    monkeypatch.setitem(sys.modules, "spacy", types.SimpleNamespace(load=load))
    expected = syntax.Parse(("Dogs", "bark", "."), ((1, 0, "nsubj"), (1, 2, "punct")))
    assert syntax.spacy_parses(["Dogs bark."]) == [expected]
    with pytest.raises(AttnflowError, match="cannot load the pipeline 'en_core_web_trf'.*python -m spacy download"):
        syntax.spacy_parses(["Dogs bark."], "en_core_web_trf")


def test_arcs_from_the_prediction_position_are_scored_from_it_only():
    """A sink head that parks every query on [CLS] must not count as following the link from [CLS] to the subject."""
    n = 4
    sink = _pointing([0] * n, n)
    to_subject = _pointing([2] + [0] * (n - 1), n)  # [CLS] looks at the subject (token 2), the rest at [CLS]
    a = np.stack([sink, to_subject])[None]
    counter = syntax.SyntacticCounter()
    counter.add(a, syntax.token_arcs(syntax.Parse(("the", "dog", "barks"), ((-1, 1, "agreement"),)),
                                     [(1,), (2,), (3,)], 0))
    scores = counter.scores()["agreement"]
    assert np.isnan(scores.accuracy["dependent->head"]).all() and scores.offset["dependent->head"] is None
    np.testing.assert_allclose(scores.accuracy["head->dependent"][0], [0.0, 1.0])
    assert scores.is_syntactic(0.0).tolist() == [[False, True]]  # the baseline (offset +2) is right: gain 0
    assert json.loads(json.dumps(scores.to_dict()))["baseline"]["dependent->head"] is None
