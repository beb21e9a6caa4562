//! Rotation-policy parsing: the service's rules for a policy body (at most one Rotate and
//! one Notify action, each with exactly one trigger; `expiryTime` at least 28 days; a Rotate
//! trigger at least 7 days; every instant they imply representable), normalized (action
//! types as `Rotate` / `Notify`, a default `Notify` at `P30D` before expiry when absent).

use serde_json::Value;

use crate::api_error::ApiError;
use crate::duration::{checked_after, checked_before, parse_iso8601};
use crate::model::{LifetimeAction, RotationPolicy};

/// Validates and normalizes a rotation policy body.
pub(super) fn parse(v: &Value, now: i64) -> Result<RotationPolicy, ApiError> {
    const MIN_ROTATE: i64 = 7 * 86_400;
    const MIN_EXPIRY: i64 = 28 * 86_400;
    let expiry_time = match v.pointer("/attributes/expiryTime") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let d = parse_iso8601(s).ok_or_else(|| {
                ApiError::bad_parameter(format!("Invalid ISO-8601 duration for expiryTime: {s}."))
            })?;
            if d < MIN_EXPIRY {
                return Err(ApiError::bad_parameter(
                    "The expiryTime of a rotation policy must be at least 28 days.",
                ));
            }
            if checked_after(now, d).is_none() {
                return Err(ApiError::bad_parameter(format!(
                    "expiryTime {s} is too long: the expiry it sets would be past the year 9999."
                )));
            }
            Some((s.clone(), d))
        }
        Some(_) => {
            return Err(ApiError::bad_parameter(
                "expiryTime must be an ISO-8601 duration string.",
            ));
        }
    };
    let mut actions = Vec::new();
    let list = match v.get("lifetimeActions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(ApiError::bad_parameter("lifetimeActions must be an array.")),
    };
    if list.len() > 2 {
        return Err(ApiError::bad_parameter(
            "A rotation policy can have at most two lifetime actions.",
        ));
    }
    for a in &list {
        let ty = a
            .pointer("/action/type")
            .and_then(|t| t.as_str())
            .unwrap_or("");
        let action = match ty.to_ascii_lowercase().as_str() {
            "rotate" => "Rotate",
            "notify" => "Notify",
            _ => {
                return Err(ApiError::bad_parameter(format!(
                    "Invalid lifetime action type: {ty}."
                )));
            }
        };
        if actions.iter().any(|x: &LifetimeAction| x.action == action) {
            return Err(ApiError::bad_parameter(format!(
                "Only one {action} action is allowed."
            )));
        }
        let after = a
            .pointer("/trigger/timeAfterCreate")
            .and_then(|t| t.as_str())
            .map(str::to_string);
        let before = a
            .pointer("/trigger/timeBeforeExpiry")
            .and_then(|t| t.as_str())
            .map(str::to_string);
        match (&after, &before) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(ApiError::bad_parameter(
                    "Each lifetime action needs exactly one of timeAfterCreate or timeBeforeExpiry.",
                ));
            }
            _ => {}
        }
        for d in after.iter().chain(before.iter()) {
            let secs = parse_iso8601(d).ok_or_else(|| {
                ApiError::bad_parameter(format!("Invalid ISO-8601 duration: {d}."))
            })?;
            if action == "Rotate" && secs < MIN_ROTATE {
                return Err(ApiError::bad_parameter(
                    "The rotation time must be at least 7 days.",
                ));
            }
            // The scheduler computes created + timeAfterCreate and expiry - timeBeforeExpiry;
            // both must be instants, not overflows.
            if checked_after(now, secs).is_none() {
                return Err(ApiError::bad_parameter(format!(
                    "Lifetime action trigger {d} is too long: it would fall past the year 9999."
                )));
            }
        }
        if let (Some(b), Some((_, exp_secs))) = (&before, &expiry_time) {
            let secs = parse_iso8601(b).unwrap_or(i64::MAX);
            let fires = checked_after(now, *exp_secs).and_then(|e| checked_before(e, secs));
            if fires.is_none() {
                return Err(ApiError::bad_parameter(format!(
                    "timeBeforeExpiry {b} is out of range for expiryTime {}.",
                    expiry_time.as_ref().map(|(s, _)| s.as_str()).unwrap_or("")
                )));
            }
        }
        if after.is_some() && action == "Notify" {
            return Err(ApiError::bad_parameter(
                "timeAfterCreate only applies to the Rotate action.",
            ));
        }
        if before.is_some() && expiry_time.is_none() && action == "Rotate" {
            return Err(ApiError::bad_parameter(
                "timeBeforeExpiry requires attributes.expiryTime.",
            ));
        }
        actions.push(LifetimeAction {
            action: action.to_string(),
            time_after_create: after,
            time_before_expiry: before,
        });
    }
    if !actions.iter().any(|a| a.action == "Notify") {
        actions.push(LifetimeAction {
            action: "Notify".into(),
            time_after_create: None,
            time_before_expiry: Some("P30D".into()),
        });
    }
    Ok(RotationPolicy {
        lifetime_actions: actions,
        expiry_time: expiry_time.map(|(s, _)| s),
        created: now,
        updated: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_validation() {
        let p = parse(
            &json!({"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"rotate"}}],"attributes":{}}),
            100,
        )
        .unwrap();
        assert_eq!(p.lifetime_actions.len(), 2);
        assert_eq!(p.lifetime_actions[0].action, "Rotate");
        assert_eq!(
            p.lifetime_actions[1].time_before_expiry.as_deref(),
            Some("P30D")
        );
        assert!(parse(&json!({"lifetimeActions":[{"trigger":{"timeAfterCreate":"P1D"},"action":{"type":"Rotate"}}]}), 0).is_err());
        assert!(parse(&json!({"attributes":{"expiryTime":"P10D"}}), 0).is_err());
        assert!(parse(&json!({"lifetimeActions":[{"trigger":{"timeBeforeExpiry":"P10D"},"action":{"type":"Rotate"}}]}), 0).is_err());
    }
}
