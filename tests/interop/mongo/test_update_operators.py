"""Every update operator of issue 4, through pymongo."""

import datetime

import pytest
from pymongo.errors import OperationFailure, WriteError


def one(coll, update, doc=None, **kw):
    coll.delete_many({})
    coll.insert_one(doc if doc is not None else {"_id": 1})
    coll.update_one({"_id": 1}, update, **kw)
    return coll.find_one({"_id": 1})


def test_field_operators(coll):
    assert one(coll, {"$set": {"a.b": 1}}) == {"_id": 1, "a": {"b": 1}}
    assert one(coll, {"$unset": {"x": ""}}, {"_id": 1, "x": 1, "y": 2}) == {"_id": 1, "y": 2}
    assert one(coll, {"$inc": {"n": 5}}, {"_id": 1, "n": 1})["n"] == 6
    assert one(coll, {"$mul": {"n": 3}}, {"_id": 1, "n": 2})["n"] == 6
    assert one(coll, {"$min": {"n": 1}}, {"_id": 1, "n": 2})["n"] == 1
    assert one(coll, {"$max": {"n": 1}}, {"_id": 1, "n": 2})["n"] == 2
    assert one(coll, {"$rename": {"a": "b"}}, {"_id": 1, "a": 7}) == {"_id": 1, "b": 7}
    d = one(coll, {"$currentDate": {"t": True}})
    assert isinstance(d["t"], datetime.datetime)


def test_set_on_insert(coll):
    coll.update_one({"_id": 2}, {"$set": {"a": 1}, "$setOnInsert": {"created": True}}, upsert=True)
    assert coll.find_one({"_id": 2}) == {"_id": 2, "a": 1, "created": True}
    coll.update_one({"_id": 2}, {"$set": {"a": 2}, "$setOnInsert": {"other": True}}, upsert=True)
    assert coll.find_one({"_id": 2}) == {"_id": 2, "a": 2, "created": True}


def test_upsert_seeds_from_query(coll):
    coll.update_one({"k": "x", "n": {"$gt": 1}}, {"$set": {"v": 1}}, upsert=True)
    d = coll.find_one({"k": "x"})
    assert d["v"] == 1 and "n" not in d


def test_array_operators(coll):
    base = {"_id": 1, "a": [3, 1, 2]}
    assert one(coll, {"$push": {"a": 4}}, dict(base))["a"] == [3, 1, 2, 4]
    assert one(coll, {"$push": {"a": {"$each": [5, 0], "$sort": 1, "$slice": 3}}}, dict(base))["a"] == [0, 1, 2]
    assert one(coll, {"$push": {"a": {"$each": [9], "$position": 0}}}, dict(base))["a"] == [9, 3, 1, 2]
    assert one(coll, {"$addToSet": {"a": 1}}, dict(base))["a"] == [3, 1, 2]
    assert one(coll, {"$addToSet": {"a": {"$each": [1, 8]}}}, dict(base))["a"] == [3, 1, 2, 8]
    assert one(coll, {"$pull": {"a": {"$gte": 2}}}, dict(base))["a"] == [1]
    assert one(coll, {"$pullAll": {"a": [1, 3]}}, dict(base))["a"] == [2]
    assert one(coll, {"$pop": {"a": 1}}, dict(base))["a"] == [3, 1]
    assert one(coll, {"$pop": {"a": -1}}, dict(base))["a"] == [1, 2]


def test_positional_operators(coll):
    coll.insert_one({"_id": 1, "g": [{"k": 1, "v": 0}, {"k": 2, "v": 0}, {"k": 3, "v": 0}]})
    coll.update_one({"_id": 1, "g.k": 2}, {"$set": {"g.$.v": 20}})
    assert [x["v"] for x in coll.find_one()["g"]] == [0, 20, 0]
    coll.update_one({"_id": 1}, {"$inc": {"g.$[].v": 1}})
    assert [x["v"] for x in coll.find_one()["g"]] == [1, 21, 1]
    coll.update_one({"_id": 1}, {"$set": {"g.$[e].v": -1}}, array_filters=[{"e.k": {"$gte": 2}}])
    assert [x["v"] for x in coll.find_one()["g"]] == [1, -1, -1]


def test_update_errors(coll):
    coll.insert_one({"_id": 1, "s": "text"})
    with pytest.raises(WriteError) as err:
        coll.update_one({"_id": 1}, {"$inc": {"s": 1}})
    assert err.value.code == 14
    with pytest.raises(WriteError) as err:
        coll.update_one({"_id": 1}, {"$set": {"_id": 2}})
    assert err.value.code == 66
    with pytest.raises(WriteError) as err:
        coll.update_one({"_id": 1}, {"$set": {"a": 1}, "$inc": {"a": 1}})
    assert err.value.code == 40
    with pytest.raises((WriteError, OperationFailure)):
        coll.update_one({"_id": 1}, {"$nope": {"a": 1}})
