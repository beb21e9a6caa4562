"""Every query operator of issue 4, through pymongo."""

import re

import pytest
from bson import Int64, Regex
from pymongo.errors import OperationFailure


@pytest.fixture()
def people(coll):
    coll.insert_many([
        {"_id": 1, "name": "ada", "age": 36, "tags": ["math", "code"], "addr": {"city": "london"}, "scores": [90, 72]},
        {"_id": 2, "name": "bob", "age": 25, "tags": ["code"], "addr": {"city": "paris"}, "scores": [50, 60, 70]},
        {"_id": 3, "name": "Cyd", "age": Int64(41), "tags": [], "scores": [100]},
        {"_id": 4, "name": "dee", "age": 25.0, "tags": ["art", "math"], "addr": {"city": "london"}, "nick": None},
        {"_id": 5, "name": "eve", "age": "unknown", "items": [{"k": "a", "q": 1}, {"k": "b", "q": 5}]},
    ])
    return coll


def ids(cursor):
    return sorted(d["_id"] for d in cursor)


def test_comparison(people):
    assert ids(people.find({"age": 25})) == [2, 4]
    assert ids(people.find({"age": {"$eq": 36}})) == [1]
    assert ids(people.find({"age": {"$ne": 25}})) == [1, 3, 5]
    assert ids(people.find({"age": {"$gt": 30}})) == [1, 3]
    assert ids(people.find({"age": {"$gte": 36}})) == [1, 3]
    assert ids(people.find({"age": {"$lt": 36}})) == [2, 4]
    assert ids(people.find({"age": {"$lte": 36}})) == [1, 2, 4]
    assert ids(people.find({"age": {"$in": [36, 41]}})) == [1, 3]
    assert ids(people.find({"age": {"$nin": [25, 36]}})) == [3, 5]
    assert ids(people.find({"age": {"$gt": "a"}})) == [5]


def test_logical(people):
    assert ids(people.find({"$and": [{"age": 25}, {"name": "bob"}]})) == [2]
    assert ids(people.find({"$or": [{"name": "ada"}, {"age": 41}]})) == [1, 3]
    assert ids(people.find({"$nor": [{"age": 25}, {"name": "eve"}]})) == [1, 3]
    assert ids(people.find({"age": {"$not": {"$gt": 30}}})) == [2, 4, 5]


def test_element(people):
    assert ids(people.find({"addr": {"$exists": True}})) == [1, 2, 4]
    assert ids(people.find({"addr": {"$exists": False}})) == [3, 5]
    assert ids(people.find({"age": {"$type": "string"}})) == [5]
    assert ids(people.find({"age": {"$type": "long"}})) == [3]
    assert ids(people.find({"age": {"$type": "number"}})) == [1, 2, 3, 4]
    assert ids(people.find({"age": {"$type": 1}})) == [4]
    assert ids(people.find({"nick": {"$type": "null"}})) == [4]


def test_null_matches_missing(people):
    assert ids(people.find({"nick": None})) == [1, 2, 3, 4, 5]


def test_regex(people):
    assert ids(people.find({"name": {"$regex": "^[a-c]"}})) == [1, 2]
    assert ids(people.find({"name": {"$regex": "^c", "$options": "i"}})) == [3]
    assert ids(people.find({"name": re.compile("E$", re.IGNORECASE)})) == [4, 5]
    assert ids(people.find({"name": Regex("^d")})) == [4]


def test_arrays(people):
    assert ids(people.find({"tags": "math"})) == [1, 4]
    assert ids(people.find({"tags": ["code"]})) == [2]
    assert ids(people.find({"tags": {"$size": 2}})) == [1, 4]
    assert ids(people.find({"tags": {"$size": 0}})) == [3]
    assert ids(people.find({"tags": {"$all": ["math", "code"]}})) == [1]
    assert ids(people.find({"scores": {"$elemMatch": {"$gt": 80, "$lt": 95}}})) == [1]
    assert ids(people.find({"items": {"$elemMatch": {"k": "b", "q": {"$gte": 5}}}})) == [5]
    assert ids(people.find({"scores": {"$gt": 95}})) == [3]
    assert ids(people.find({"scores.1": 60})) == [2]


def test_dotted_paths(people):
    assert ids(people.find({"addr.city": "london"})) == [1, 4]
    assert ids(people.find({"items.k": "a"})) == [5]


def test_mod_and_expr(people):
    assert ids(people.find({"_id": {"$mod": [2, 1]}})) == [1, 3, 5]
    assert ids(people.find({"$expr": {"$gt": ["$_id", 3]}})) == [4, 5]
    assert ids(people.find({"$expr": {"$eq": [{"$size": {"$ifNull": ["$tags", []]}}, 1]}})) == [2]


def test_bad_operator_is_an_error(people):
    with pytest.raises(OperationFailure) as err:
        list(people.find({"age": {"$bogus": 1}}))
    assert err.value.code == 2
