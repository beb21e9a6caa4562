// Driven by crates/wire/tests/interop.rs: mongosh --tls --tlsCAFile <ca> --eval "$(cat this)".
// Inserts, queries, aggregates and prints one line the Rust test checks.
const coll = db.getSiblingDB("mongosh_smoke").items;
coll.drop();
coll.insertMany([{ n: 1, s: "one" }, { n: 2, s: "two" }, { n: 3, s: "three" }]);
coll.createIndex({ n: 1 });
const found = coll.find({ n: { $gte: 2 } }).sort({ n: -1 }).toArray().map((d) => d.s);
const total = coll.aggregate([{ $group: { _id: null, t: { $sum: "$n" } } }]).toArray()[0].t;
coll.updateOne({ n: 1 }, { $set: { s: "uno" } });
const uno = coll.findOne({ n: 1 }).s;
print("MONGOSH_RESULT " + JSON.stringify({ found: found, total: total, uno: uno, count: coll.countDocuments() }));
coll.drop();
