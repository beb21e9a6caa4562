"""Aggregation stages, indexes and explain, through pymongo."""

import pytest
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError, OperationFailure


@pytest.fixture()
def sales(coll):
    coll.insert_many([
        {"_id": 1, "item": "a", "qty": 2, "price": 10, "tags": ["x", "y"]},
        {"_id": 2, "item": "b", "qty": 1, "price": 20, "tags": ["y"]},
        {"_id": 3, "item": "a", "qty": 5, "price": 10, "tags": []},
        {"_id": 4, "item": "c", "qty": 3, "price": 5},
    ])
    return coll


def test_match_group_sort(sales):
    out = list(sales.aggregate([
        {"$match": {"qty": {"$gte": 1}}},
        {"$group": {"_id": "$item", "total": {"$sum": {"$multiply": ["$qty", "$price"]}},
                    "n": {"$sum": 1}, "avg": {"$avg": "$qty"}, "mn": {"$min": "$qty"},
                    "mx": {"$max": "$qty"}, "first": {"$first": "$_id"}, "last": {"$last": "$_id"},
                    "all": {"$push": "$qty"}, "set": {"$addToSet": "$price"}}},
        {"$sort": {"total": -1}},
    ]))
    assert [d["_id"] for d in out] == ["a", "b", "c"]
    a = out[0]
    assert a["total"] == 70 and a["n"] == 2 and a["avg"] == 3.5
    assert (a["mn"], a["mx"], a["first"], a["last"]) == (2, 5, 1, 3)
    assert sorted(a["all"]) == [2, 5] and a["set"] == [10]


def test_project_add_fields_unset_limit_skip(sales):
    out = list(sales.aggregate([
        {"$sort": {"_id": 1}},
        {"$skip": 1},
        {"$limit": 2},
        {"$project": {"item": 1, "cost": {"$multiply": ["$qty", "$price"]}}},
        {"$addFields": {"big": {"$gt": ["$cost", 20]}}},
        {"$set": {"label": {"$concat": ["item-", "$item"]}}},
        {"$unset": "item"},
    ]))
    assert out == [
        {"_id": 2, "cost": 20, "big": False, "label": "item-b"},
        {"_id": 3, "cost": 50, "big": True, "label": "item-a"},
    ]


def test_unwind_count_replace_root(sales):
    out = list(sales.aggregate([{"$unwind": "$tags"}, {"$count": "n"}]))
    assert out == [{"n": 3}]
    out = list(sales.aggregate([
        {"$unwind": {"path": "$tags", "includeArrayIndex": "i", "preserveNullAndEmptyArrays": True}},
        {"$match": {"_id": {"$in": [3, 4]}}},
        {"$sort": {"_id": 1}},
        {"$project": {"_id": 1, "i": 1}},
    ]))
    assert out == [{"_id": 3, "i": None}, {"_id": 4, "i": None}]
    out = list(sales.aggregate([{"$match": {"_id": 1}}, {"$replaceRoot": {"newRoot": {"q": "$qty"}}}]))
    assert out == [{"q": 2}]


def test_aggregate_cursor_batches(coll):
    coll.insert_many([{"i": i} for i in range(500)])
    got = [d["i"] for d in coll.aggregate([{"$sort": {"i": 1}}], batchSize=13)]
    assert got == list(range(500))


def test_indexes_create_list_drop(coll):
    assert coll.create_index([("a", ASCENDING), ("b", DESCENDING)]) == "a_1_b_-1"
    coll.create_index("u", unique=True, name="u_unique")
    coll.create_index("s", sparse=True)
    names = {ix["name"] for ix in coll.list_indexes()}
    assert names == {"_id_", "a_1_b_-1", "u_unique", "s_1"}
    info = coll.index_information()
    assert info["u_unique"]["unique"] is True
    coll.drop_index("s_1")
    assert "s_1" not in coll.index_information()
    coll.drop_indexes()
    assert list(coll.index_information()) == ["_id_"]


def test_unique_index_violation(coll):
    coll.create_index("email", unique=True)
    coll.insert_one({"email": "a@x"})
    with pytest.raises(DuplicateKeyError) as err:
        coll.insert_one({"email": "a@x"})
    assert err.value.code == 11000
    assert err.value.details["keyPattern"] == {"email": 1}
    assert err.value.details["keyValue"] == {"email": "a@x"}


def test_explain_shows_index_use(coll):
    coll.insert_many([{"k": i, "v": i * 2} for i in range(100)])
    coll.create_index("k")
    plan = coll.find({"k": 42}).explain()
    assert "IXSCAN" in str(plan["queryPlanner"]["winningPlan"])
    assert "k_1" in str(plan["queryPlanner"]["winningPlan"])
    scan = coll.find({"v": 42}).explain()
    assert "COLLSCAN" in str(scan["queryPlanner"]["winningPlan"])
    stats = coll.database.command("explain", {"find": coll.name, "filter": {"k": 42}}, verbosity="executionStats")
    assert stats["executionStats"]["nReturned"] == 1
