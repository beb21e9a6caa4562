//! The vault's `networkAcls` as ARM accepts them: default action, bypass, IP rules
//! (normalized to CIDR). Enforcement is the data plane's (`data_plane::network`).

use serde_json::Value;

use super::bad_request;
use crate::api_error::ApiError;
use crate::data_plane::cidr_contains;
use crate::model::NetworkAcls;

pub(super) fn parse_network_acls(v: &Value) -> Result<NetworkAcls, ApiError> {
    let mut acls = NetworkAcls::default();
    if let Some(d) = v.get("defaultAction").and_then(|x| x.as_str()) {
        acls.default_action = match d.to_ascii_lowercase().as_str() {
            "allow" => "Allow".into(),
            "deny" => "Deny".into(),
            _ => {
                return Err(bad_request(format!(
                    "Invalid networkAcls.defaultAction '{d}'."
                )));
            }
        };
    }
    if let Some(b) = v.get("bypass").and_then(|x| x.as_str()) {
        acls.bypass = match b.to_ascii_lowercase().as_str() {
            "azureservices" => "AzureServices".into(),
            "none" => "None".into(),
            _ => return Err(bad_request(format!("Invalid networkAcls.bypass '{b}'."))),
        };
    }
    if let Some(rules) = v.get("ipRules").and_then(|x| x.as_array()) {
        for r in rules {
            let val = r
                .get("value")
                .and_then(|x| x.as_str())
                .ok_or_else(|| bad_request("networkAcls.ipRules[].value is required."))?;
            let normalized = if val.contains('/') {
                val.to_string()
            } else if val.contains(':') {
                format!("{val}/128")
            } else {
                format!("{val}/32")
            };
            let (ip, len) = normalized.split_once('/').unwrap_or((val, "32"));
            let ip_ok = ip.parse::<std::net::IpAddr>().is_ok();
            let len_ok = len
                .parse::<u8>()
                .is_ok_and(|l| l <= if ip.contains(':') { 128 } else { 32 });
            if !ip_ok || !len_ok {
                return Err(bad_request(format!("Invalid IP rule '{val}'.")));
            }
            // Sanity: the network contains its own address.
            if let Ok(a) = ip.parse() {
                debug_assert!(cidr_contains(&normalized, a));
            }
            acls.ip_rules.push(normalized);
        }
    }
    Ok(acls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn network_acl_normalization() {
        let a = parse_network_acls(&json!({"defaultAction":"deny","bypass":"None","ipRules":[{"value":"10.0.0.1"},{"value":"10.1.0.0/16"}]})).unwrap();
        assert_eq!(a.default_action, "Deny");
        assert_eq!(a.bypass, "None");
        assert_eq!(
            a.ip_rules,
            vec!["10.0.0.1/32".to_string(), "10.1.0.0/16".to_string()]
        );
        assert!(parse_network_acls(&json!({"ipRules":[{"value":"nope"}]})).is_err());
    }
}
