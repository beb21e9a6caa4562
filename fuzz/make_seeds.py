#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into seeds/<target>/.

The seeds are the inputs the tests send (handshakes, SASL, the query shapes the docdb and
wire tests use, key material as the vault imports it), so that fuzzing starts from inputs
that reach deep into each parser. Run it again after changing it; the files are committed.
Needs pymongo's `bson` and `cryptography` (both installed by scripts/install-test-deps).
"""
import base64
import hashlib
import json
import os
import struct
import zlib

import bson
from cryptography.hazmat.primitives.asymmetric import rsa

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def op_msg(body, request_id=1, sequences=(), checksum=False):
    sections = b"\x00" + bson.encode(body)
    for ident, docs in sequences:
        payload = ident.encode() + b"\x00" + b"".join(bson.encode(d) for d in docs)
        sections += b"\x01" + struct.pack("<i", 4 + len(payload)) + payload
    flags = 1 if checksum else 0
    length = 16 + 4 + len(sections) + (4 if checksum else 0)
    msg = struct.pack("<iiii", length, request_id, 0, 2013) + struct.pack("<I", flags) + sections
    if checksum:
        import crc32c  # noqa: optional; seeds without checksums are written otherwise

        msg += struct.pack("<I", crc32c.crc32c(msg))
    return msg


def op_query(ns, query, request_id=1):
    body = struct.pack("<i", 0) + ns.encode() + b"\x00" + struct.pack("<ii", 0, -1) + bson.encode(query)
    return struct.pack("<iiii", 16 + len(body), request_id, 0, 2004) + body


def op_compressed(message, compressor_id=2):
    original_opcode = struct.unpack("<i", message[12:16])[0]
    body = message[16:]
    packed = zlib.compress(body)
    payload = struct.pack("<iiB", original_opcode, len(body), compressor_id) + packed
    return struct.pack("<iiii", 16 + len(payload), 9, 0, 2012) + payload


def wire_frames():
    hello = {"hello": 1, "client": {"driver": {"name": "pymongo", "version": "4"}}, "compression": ["zlib"], "$db": "admin"}
    write("wire_frames", "hello", op_msg(hello))
    write("wire_frames", "ismaster_op_query", op_query("admin.$cmd", {"isMaster": 1, "helloOk": True}))
    sasl = {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": bson.Binary(b"n,,n=admin,r=fyko+d2lbbFgONRv9qkxdawL"), "autoAuthorize": 1, "options": {"skipEmptyExchange": True}, "$db": "admin"}
    write("wire_frames", "sasl_start", op_msg(hello) + op_msg(sasl, 2))
    write("wire_frames", "sasl_continue", op_msg({"saslContinue": 1, "conversationId": 1, "payload": bson.Binary(b"c=biws,r=x,p=AAAA"), "$db": "admin"}))
    write("wire_frames", "find_unauthenticated", op_msg({"find": "c", "filter": {"a": {"$gt": 1}}, "$db": "db"}))
    write("wire_frames", "insert_sequence", op_msg({"insert": "c", "$db": "db"}, sequences=[("documents", [{"_id": 1}, {"_id": 2, "a": [1, {"b": 2}]}])]))
    write("wire_frames", "compressed_hello", op_msg(hello) + op_compressed(op_msg({"ping": 1, "$db": "admin"}, 2)))
    write("wire_frames", "ping_buildinfo", op_msg({"ping": 1, "$db": "admin"}) + op_msg({"buildInfo": 1, "$db": "admin"}, 2))
    write("wire_frames", "endsessions", op_msg({"endSessions": [{"id": bson.Binary(os.urandom(16), 4)}], "$db": "admin"}))


def scram():
    write("scram", "rfc7677", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO\x00c=biws,r=rOprNGfwEbeRWgbNEkqOserverNonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=\x00")
    write("scram", "saslname", b"n,,n=us=2Cer=3D,r=abc\x00c=biws,r=abcserverNonce,p=AAAA\x00\x00")
    write("scram", "channel_binding", b"y,,n=admin,r=nonce\x00c=eSws,r=nonceserverNonce,p=YWJj")


QUERIES = [
    {"filter": {"a": {"$gt": 1}}, "sort": {"a": -1}, "projection": {"b.c": 1, "_id": 0}},
    {"filter": {"$or": [{"a": 1}, {"s": {"$regex": "^h", "$options": "i"}}]}, "projection": {"b": {"$slice": 1}}},
    {"filter": {"b.c": {"$elemMatch": {"d": "x"}}}, "projection": {"b.c.$": 1}},
    {"filter": {"a": {"$in": [1, "str", None]}, "t": {"$exists": True}}, "limit": 2},
    {"filter": {"$expr": {"$gt": [{"$add": ["$a", 1]}, 2]}}},
    {"filter": {"a": {"$type": "number"}, "arr": {"$size": 2}}, "sort": {"s": 1, "_id": -1}},
    {"pipeline": [{"$match": {"a": {"$exists": True}}}, {"$group": {"_id": "$t", "n": {"$sum": 1}, "avg": {"$avg": "$a"}}}, {"$sort": {"n": -1}}]},
    {"pipeline": [{"$unwind": "$a"}, {"$project": {"x": {"$cond": [{"$gt": ["$a", 1]}, "big", "small"]}}}, {"$limit": 3}]},
    {"pipeline": [{"$addFields": {"b.c.e": {"$concat": ["$s", "!"]}}}, {"$skip": 1}, {"$count": "n"}]},
    {"pipeline": [{"$facet": {"x": [{"$match": {}}], "y": [{"$sample": {"size": 2}}]}}]},
    {"pipeline": [{"$lookup": {"from": "c", "localField": "a", "foreignField": "a", "as": "j"}}]},
    {"filter": {"_id": 1}, "update": {"$set": {"b.c.0": 5, "n.m.o.q": [1]}, "$inc": {"a": 2}}},
    {"filter": {}, "update": {"$push": {"arr": {"$each": [3, 1], "$sort": 1, "$slice": -2}}, "$unset": {"s": ""}}, "multi": True},
    {"filter": {"a": 2.5}, "update": {"$rename": {"s": "r"}, "$currentDate": {"d": True}, "$min": {"a": 0}}},
    {"filter": {"_id": 9}, "update": {"$setOnInsert": {"z": 1}}, "upsert": True},
    {"filter": {}, "update": {"$set": {"b.c.$[e]": 0}}, "arrayFilters": [{"e": {"$gte": 2}}]},
    {"filter": {}, "update": [{"$set": {"y": {"$ifNull": ["$y", "$a"]}}}, {"$unset": "t"}]},
    {"filter": {"_id": 3}, "update": {"_id": 3, "replaced": True}},
    {"filter": {}, "update": {"$pull": {"arr": {"k": None}}, "$addToSet": {"tags": "x"}, "$pop": {"a": 1}}},
    {"distinct": "b.c", "filter": {"a": {"$ne": None}}},
]


def query():
    for i, q in enumerate(QUERIES):
        write("query", f"q{i:02}", bson.encode(q))


def keycodec():
    values = [
        {"a": 1, "b": 1.0, "c": bson.Int64(1), "d": bson.Decimal128("1.0"), "e": "1", "f": None},
        {"a": [1, 2], "b": {"x": [None, True]}, "c": bson.Binary(b"\x00\xff", 0), "d": bson.ObjectId(b"123456789012")},
        {"a": float("nan"), "b": float("-inf"), "c": -0.0, "d": bson.Decimal128("-Infinity"), "e": bson.MinKey(), "f": bson.MaxKey()},
        {"a": "", "b": "a\x00b", "c": bson.Regex("^a", "i"), "d": bson.Timestamp(1, 2), "e": bson.datetime_ms.DatetimeMS(-5)},
        {"a": bson.Int64(2**62), "b": 2**62 + 0.5, "c": bson.Decimal128("9.999999999999999999999999999999999E+6144"), "d": {"": {}}, "e": []},
    ]
    for i, v in enumerate(values):
        write("keycodec", f"k{i}", bson.encode(v))


def storage_files():
    for pick in range(8):
        write("storage_files", f"cut{pick}", bytes([pick, 0]) + struct.pack("<I", 1000 * pick + 17))
        write("storage_files", f"flip{pick}", bytes([pick, 1]) + struct.pack("<IB", 64 + 300 * pick, 0x01) + struct.pack("<IB", 4, 0x80))


def b64u(n, length=None):
    raw = n.to_bytes(length or (n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def vault_state():
    write("vault_state", "cut_mid", bytes([0]) + struct.pack("<I", 777))
    write("vault_state", "cut_end", bytes([0]) + struct.pack("<I", 0xFFFFFFFF))
    write("vault_state", "flip", bytes([1]) + struct.pack("<IB", 100, 1) + struct.pack("<IB", 5, 0x40))
    write("vault_state", "splice", bytes([3]) + struct.pack("<I", 200) + b"\x00\x00\x00\x10garbage")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p = key.private_numbers()
    jwk = {"kty": "RSA", "key_ops": ["wrapKey", "unwrapKey"], "n": b64u(p.public_numbers.n), "e": b64u(p.public_numbers.e),
           "d": b64u(p.d), "p": b64u(p.p), "q": b64u(p.q), "dp": b64u(p.dmp1), "dq": b64u(p.dmq1), "qi": b64u(p.iqmp)}
    write("vault_state", "jwk_rsa2048", bytes([4]) + json.dumps(jwk).encode())
    write("vault_state", "unwrap", bytes([5]) + hashlib.sha512(b"x").digest() * 4)
    write("vault_state", "backup", bytes([6]) + json.dumps({"name": "k", "versions": []}).encode())


def token():
    header = {"alg": "ES256", "typ": "JWT", "kid": "KID"}
    claims = {"aud": "https://vault.azure.net", "iss": "https://127.0.0.1:8443/t1/v2.0", "tid": "t1", "oid": "o", "appid": "a",
              "azp": "a", "sub": "o", "idtyp": "app", "iat": 1_800_000_000, "nbf": 1_799_999_000, "exp": 1_800_003_600,
              "ver": "2.0", "uti": "u"}
    raw = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=")
    write("token", "forged", b"\x00" + raw(header) + b"." + raw(claims) + b".AAAA")
    write("token", "signed", b"\x01" + json.dumps(header).encode() + b"\x00" + json.dumps(claims).encode())
    write("token", "signed_mi", b"\x01" + json.dumps(header).encode() + b"\x00" + json.dumps({**claims, "xms_mirid": "/subscriptions/s", "xms_trusted_svc": True}).encode())


if __name__ == "__main__":
    wire_frames()
    scram()
    query()
    keycodec()
    storage_files()
    vault_state()
    token()
