//! Listings: keys, a key's versions, deleted keys. Paging follows the service:
//! `maxresults` 1-25 and an opaque `$skiptoken` in an absolute `nextLink`.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::bundle::{item_json, live_record};
use super::call::Call;
use crate::api_error::ApiError;
use crate::http_util::{Body, json_response, query_get};
use crate::jwk::{b64u, b64u_decode};
use crate::model::KeyRecord;
use crate::state::KeyEntry;

/// `GET /keys`: the latest version of each live key.
pub(super) async fn keys(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let query = &call.query[..];
    let (max, skip) = paging(query)?;
    let keys = call.vault.keys.read();
    let items = by_name(keys.values(), false)
        .into_iter()
        .filter_map(|r| {
            r.latest()
                .map(|kv| item_json(call, format!("{}/keys/{}", call.base, r.name), kv))
        })
        .collect();
    Ok(page(call, "/keys", items, max, skip))
}

/// `GET /keys/{name}/versions`.
pub(super) async fn versions(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let name = call.name.as_str();
    let query = &call.query[..];
    let (max, skip) = paging(query)?;
    let keys = call.vault.keys.read();
    let e = keys.get(&name.to_ascii_lowercase());
    let rec = live_record(e.map(|e| &e.record), name)?;
    let items = rec
        .versions
        .iter()
        .map(|kv| {
            item_json(
                call,
                format!("{}/keys/{}/{}", call.base, rec.name, kv.version),
                kv,
            )
        })
        .collect();
    Ok(page(
        call,
        &format!("/keys/{}/versions", rec.name),
        items,
        max,
        skip,
    ))
}

/// `GET /deletedkeys`.
pub(super) async fn deleted(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let query = &call.query[..];
    let (max, skip) = paging(query)?;
    let keys = call.vault.keys.read();
    let items = by_name(keys.values(), true)
        .into_iter()
        .filter_map(|r| {
            let kv = r.latest()?;
            let d = r.deleted?;
            let mut i = item_json(call, format!("{}/keys/{}", call.base, r.name), kv);
            i["recoveryId"] = json!(format!("{}/deletedkeys/{}", call.base, r.name));
            i["deletedDate"] = json!(d.deleted_date);
            i["scheduledPurgeDate"] = json!(d.scheduled_purge_date);
            Some(i)
        })
        .collect();
    Ok(page(call, "/deletedkeys", items, max, skip))
}

/// The live (or soft-deleted) key records, in name order ignoring case.
fn by_name<'a>(entries: impl Iterator<Item = &'a KeyEntry>, deleted: bool) -> Vec<&'a KeyRecord> {
    let mut recs: Vec<&KeyRecord> = entries
        .map(|e| &e.record)
        .filter(|r| r.deleted.is_some() == deleted)
        .collect();
    recs.sort_by_key(|r| r.name.to_ascii_lowercase());
    recs
}

/// Resolves `maxresults` and `$skiptoken`.
fn paging(query: &[(String, String)]) -> Result<(usize, usize), ApiError> {
    let max = match query_get(query, "maxresults") {
        None => 25,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=25).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_parameter(
                    "maxresults must be between 1 and 25.",
                ));
            }
        },
    };
    let skip = match query_get(query, "$skiptoken") {
        None => 0,
        Some(t) => b64u_decode(t)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| ApiError::bad_parameter("The $skiptoken is invalid."))?,
    };
    Ok((max, skip))
}

fn page(call: &Call, path: &str, items: Vec<Value>, max: usize, skip: usize) -> Response<Body> {
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(skip).take(max).collect();
    let mut out = json!({ "value": value });
    if skip + max < total {
        out["nextLink"] = json!(format!(
            "{}{}?api-version={}&$skiptoken={}&maxresults={}",
            call.base,
            path,
            call.api_version,
            b64u((skip + max).to_string().as_bytes()),
            max
        ));
    } else {
        out["nextLink"] = Value::Null;
    }
    json_response(StatusCode::OK, &out)
}
