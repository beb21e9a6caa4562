//! Network rules: the dev firewall switch, public network access, and the firewall's IP
//! rules, with the trusted-service bypass. "Trusted" is the peer's mutual-TLS certificate
//! from the service CA, nothing else: a token claim is not a network credential.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use platform::Peer;

use crate::api_error::ApiError;
use crate::state::VaultEntry;

/// Refuses a peer the vault's network rules keep out (403 ForbiddenByFirewall /
/// ForbiddenByConnection).
pub(super) fn check(
    entry: &VaultEntry,
    peer: &Peer,
    trusted: bool,
    caller: &str,
) -> Result<(), ApiError> {
    let v = entry.record.read();
    let addr = peer.addr.ip();
    if entry.firewall_deny.load(Ordering::Relaxed) {
        return Err(ApiError::forbidden_by_firewall(
            &addr.to_string(),
            caller,
            &v.name,
            &v.location,
        ));
    }
    let bypass = v.network_acls.bypass.eq_ignore_ascii_case("AzureServices") && trusted;
    if v.public_network_access.eq_ignore_ascii_case("Disabled") {
        if bypass {
            return Ok(());
        }
        return Err(ApiError::forbidden_by_connection(
            caller,
            &v.name,
            &v.location,
        ));
    }
    if v.network_acls.default_action.eq_ignore_ascii_case("Deny") {
        if v.network_acls
            .ip_rules
            .iter()
            .any(|r| cidr_contains(r, addr))
            || bypass
        {
            return Ok(());
        }
        return Err(ApiError::forbidden_by_firewall(
            &addr.to_string(),
            caller,
            &v.name,
            &v.location,
        ));
    }
    Ok(())
}

/// True when `addr` is inside `cidr` (`a.b.c.d/n`, IPv6 too; a bare address means /32 or /128).
pub fn cidr_contains(cidr: &str, addr: IpAddr) -> bool {
    let (ip, len) = match cidr.split_once('/') {
        Some((ip, l)) => (ip, l.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = ip.trim().parse::<IpAddr>() else {
        return false;
    };
    let addr = match (net, addr) {
        (IpAddr::V4(_), IpAddr::V6(a6)) => match a6.to_ipv4_mapped() {
            Some(a4) => IpAddr::V4(a4),
            None => return false,
        },
        _ => addr,
    };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let len = len.unwrap_or(32).min(32);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (u32::from(n) & mask) == (u32::from(a) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let len = len.unwrap_or(128).min(128);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (u128::from(n) & mask) == (u128::from(a) & mask)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(cidr_contains("10.1.0.0/16", a));
        assert!(cidr_contains("10.1.2.3", a));
        assert!(cidr_contains("10.1.2.3/32", a));
        assert!(!cidr_contains("10.2.0.0/16", a));
        assert!(cidr_contains("0.0.0.0/0", a));
        assert!(!cidr_contains("garbage", a));
    }
}
