//! Write-ahead log records: one sealed log record per write batch.
//!
//! Payload: `base_seq:u64 commit_micros:u64 count:u32 op*` where
//! `op := kind:u8 (1 put, 0 delete) key:bytes [value:bytes if put]` (bytes = u32 len + data).
//! Entries of a batch get sequence numbers base_seq, base_seq+1, ... `commit_micros` is the
//! commit time (Unix microseconds) stamped under the writer lock; it never decreases from
//! one record to the next, which is what lets a restore stop at an instant.

use crate::codec::{PutExt, Reader};
use crate::error::{Error, Result};

/// One operation of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

impl Op {
    pub(crate) fn key(&self) -> &[u8] {
        match self {
            Op::Put(k, _) | Op::Delete(k) => k,
        }
    }
}

pub(crate) fn encode_batch(base_seq: u64, commit_micros: u64, ops: &[Op], out: &mut Vec<u8>) {
    out.put_u64(base_seq);
    out.put_u64(commit_micros);
    out.put_u32(ops.len() as u32);
    for op in ops {
        match op {
            Op::Put(k, v) => {
                out.put_u8(1);
                out.put_bytes(k);
                out.put_bytes(v);
            }
            Op::Delete(k) => {
                out.put_u8(0);
                out.put_bytes(k);
            }
        }
    }
}

/// One decoded WAL record.
pub(crate) struct DecodedBatch {
    pub(crate) base_seq: u64,
    pub(crate) commit_micros: u64,
    pub(crate) ops: Vec<Op>,
}

pub(crate) fn decode_batch(buf: &[u8], file: &str, record: u64) -> Result<DecodedBatch> {
    let bad = |d: &'static str| Error::corruption(file, Some(record), d);
    let mut r = Reader::new(buf);
    let seq = r.u64().map_err(|e| bad(e.0))?;
    let commit_micros = r.u64().map_err(|e| bad(e.0))?;
    let n = r.u32().map_err(|e| bad(e.0))? as usize;
    let mut ops = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let kind = r.u8().map_err(|e| bad(e.0))?;
        let k = r.bytes().map_err(|e| bad(e.0))?.to_vec();
        match kind {
            1 => {
                let v = r.bytes().map_err(|e| bad(e.0))?.to_vec();
                ops.push(Op::Put(k, v));
            }
            0 => ops.push(Op::Delete(k)),
            _ => return Err(bad("unknown op kind")),
        }
    }
    if !r.is_empty() {
        return Err(bad("trailing bytes in batch record"));
    }
    if ops.is_empty() {
        return Err(bad("empty batch record"));
    }
    Ok(DecodedBatch {
        base_seq: seq,
        commit_micros,
        ops,
    })
}
