"""CRUD through pymongo: inserts, finds with projection/sort/skip/limit, cursors,
updates, deletes, findAndModify, bulk_write, count_documents, distinct."""

import pytest
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, DeleteOne, InsertOne, ReplaceOne, ReturnDocument, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure


def test_insert_and_find_one(coll):
    res = coll.insert_one({"name": "ada", "n": 1})
    assert isinstance(res.inserted_id, ObjectId)
    doc = coll.find_one({"_id": res.inserted_id})
    assert doc["name"] == "ada" and doc["n"] == 1


def test_insert_many_and_cursor_batches(coll):
    coll.insert_many([{"i": i} for i in range(1000)])
    cursor = coll.find({}, {"_id": 0}).sort("i", ASCENDING).batch_size(7)
    got = [d["i"] for d in cursor]
    assert got == list(range(1000))


def test_projection_sort_skip_limit(coll):
    coll.insert_many([{"_id": i, "a": i % 3, "b": i, "c": {"d": i * 2}} for i in range(20)])
    docs = list(coll.find({"a": 1}, {"b": 1, "c.d": 1}).sort("b", DESCENDING).skip(1).limit(3))
    assert [d["b"] for d in docs] == [16, 13, 10]
    assert docs[0] == {"_id": 16, "b": 16, "c": {"d": 32}}
    excl = coll.find_one({"_id": 4}, {"c": 0, "_id": 0})
    assert excl == {"a": 1, "b": 4}
    multi = list(coll.find({}, {"_id": 1}).sort([("a", ASCENDING), ("b", DESCENDING)]).limit(2))
    assert [d["_id"] for d in multi] == [18, 15]


def test_projection_slice_and_elem_match(coll):
    coll.insert_one({"_id": 1, "arr": [1, 2, 3, 4, 5], "objs": [{"k": 1}, {"k": 2}]})
    assert coll.find_one({}, {"arr": {"$slice": 2}})["arr"] == [1, 2]
    assert coll.find_one({}, {"arr": {"$slice": [1, 2]}})["arr"] == [2, 3]
    assert coll.find_one({}, {"objs": {"$elemMatch": {"k": 2}}})["objs"] == [{"k": 2}]


def test_update_and_delete(coll):
    coll.insert_many([{"_id": i, "v": i} for i in range(10)])
    r = coll.update_one({"_id": 3}, {"$set": {"v": 30}})
    assert (r.matched_count, r.modified_count) == (1, 1)
    r = coll.update_many({"v": {"$lt": 3}}, {"$inc": {"v": 100}})
    assert r.matched_count == 3
    r = coll.update_one({"_id": 99}, {"$set": {"v": 1}}, upsert=True)
    assert r.upserted_id == 99
    r = coll.replace_one({"_id": 5}, {"replaced": True})
    assert coll.find_one({"_id": 5}) == {"_id": 5, "replaced": True}
    assert coll.delete_one({"_id": 0}).deleted_count == 1
    assert coll.delete_many({"v": {"$gte": 100}}).deleted_count == 2
    assert coll.count_documents({}) == 8


def test_find_one_and_modify(coll):
    coll.insert_many([{"_id": i, "n": i} for i in range(3)])
    before = coll.find_one_and_update({"_id": 1}, {"$inc": {"n": 10}})
    assert before["n"] == 1
    after = coll.find_one_and_update({"_id": 1}, {"$inc": {"n": 10}}, return_document=ReturnDocument.AFTER)
    assert after["n"] == 21
    up = coll.find_one_and_update({"_id": 7}, {"$set": {"n": 7}}, upsert=True, return_document=ReturnDocument.AFTER)
    assert up == {"_id": 7, "n": 7}
    rep = coll.find_one_and_replace({"_id": 2}, {"n": -2}, return_document=ReturnDocument.AFTER)
    assert rep == {"_id": 2, "n": -2}
    gone = coll.find_one_and_delete({"n": {"$gt": 0}}, sort=[("n", DESCENDING)])
    assert gone["_id"] == 1
    assert coll.find_one_and_update({"_id": 404}, {"$set": {"x": 1}}) is None
    proj = coll.find_one_and_update({"_id": 0}, {"$set": {"z": 1}}, projection={"_id": 0, "z": 1},
                                    return_document=ReturnDocument.AFTER)
    assert proj == {"z": 1}


def test_bulk_write_ordered_and_unordered(coll):
    coll.create_index("u", unique=True)
    res = coll.bulk_write([
        InsertOne({"_id": 1, "u": 1}),
        InsertOne({"_id": 2, "u": 2}),
        UpdateOne({"_id": 1}, {"$set": {"x": 1}}),
        UpdateMany({}, {"$set": {"y": 1}}),
        ReplaceOne({"_id": 2}, {"u": 2, "r": True}),
        DeleteOne({"_id": 1}),
    ])
    assert res.inserted_count == 2
    assert res.modified_count == 4
    assert res.deleted_count == 1
    with pytest.raises(BulkWriteError) as err:
        coll.bulk_write([InsertOne({"u": 5}), InsertOne({"u": 5}), InsertOne({"u": 6})], ordered=False)
    details = err.value.details
    assert details["nInserted"] == 2
    assert details["writeErrors"][0]["code"] == 11000
    assert details["writeErrors"][0]["index"] == 1
    with pytest.raises(BulkWriteError) as err:
        coll.bulk_write([InsertOne({"u": 7}), InsertOne({"u": 7}), InsertOne({"u": 8})], ordered=True)
    assert err.value.details["nInserted"] == 1
    assert coll.count_documents({"u": 8}) == 0


def test_duplicate_key_error_shape(coll):
    coll.insert_one({"_id": "k"})
    with pytest.raises(DuplicateKeyError) as err:
        coll.insert_one({"_id": "k"})
    assert err.value.code == 11000
    assert "E11000 duplicate key error" in str(err.value)
    assert err.value.details["keyValue"] == {"_id": "k"}


def test_count_documents_and_distinct(coll):
    coll.insert_many([{"k": i % 4, "tags": ["a", "b"] if i % 2 else ["c"]} for i in range(40)])
    assert coll.count_documents({}) == 40
    assert coll.count_documents({"k": 2}) == 10
    assert coll.count_documents({}, skip=35) == 5
    assert coll.count_documents({}, limit=3) == 3
    assert coll.estimated_document_count() == 40
    assert sorted(coll.distinct("k")) == [0, 1, 2, 3]
    assert sorted(coll.distinct("tags")) == ["a", "b", "c"]
    assert sorted(coll.distinct("k", {"k": {"$gt": 1}})) == [2, 3]


def test_collections_lifecycle(db):
    db.create_collection("one")
    db["two"].insert_one({"x": 1})
    assert set(db.list_collection_names()) >= {"one", "two"}
    assert db.list_collection_names(filter={"name": "one"}) == ["one"]
    with pytest.raises(OperationFailure) as err:
        db.command("create", "one")
    assert err.value.code == 48
    db["two"].rename("three")
    assert "three" in db.list_collection_names() and "two" not in db.list_collection_names()
    assert db["three"].find_one()["x"] == 1
    db.drop_collection("three")
    assert "three" not in db.list_collection_names()


def test_large_documents_and_limits(coll):
    big = "x" * (15 * 1024 * 1024)
    coll.insert_one({"_id": "big", "s": big})
    assert len(coll.find_one({"_id": "big"})["s"]) == len(big)
    with pytest.raises(Exception):
        coll.insert_one({"_id": "too-big", "s": "y" * (17 * 1024 * 1024)})
