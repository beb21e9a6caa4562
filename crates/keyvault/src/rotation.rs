//! Background scheduler driven by the vault clock: executes due rotation policies and purges
//! soft-deleted keys and vaults whose scheduled purge date has passed.

use std::sync::Arc;

use crate::duration::{checked_after, checked_before, parse_iso8601};
use crate::model::KeyRecord;
use crate::server::Ctx;

/// Runs forever (aborted at shutdown).
pub async fn run(ctx: Arc<Ctx>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ctx.cfg.scheduler_interval) => {}
            _ = ctx.scheduler_notified() => {}
        }
        let c = ctx.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || tick(&c)).await {
            tracing::error!(error = %e, "scheduler tick panicked");
        }
    }
}

/// Whether the rotation policy says the key is due at `now`. The arithmetic is checked: a
/// trigger whose instant falls outside the representable range never fires (the API refuses
/// such policies; this guards records written before it did).
pub fn rotation_due(rec: &KeyRecord, now: i64) -> bool {
    let (Some(policy), Some(latest)) = (&rec.rotation_policy, rec.latest()) else {
        return false;
    };
    policy.lifetime_actions.iter().any(|a| {
        if a.action != "Rotate" {
            return false;
        }
        if let Some(d) = a.time_after_create.as_deref().and_then(parse_iso8601) {
            return checked_after(latest.created, d).is_some_and(|t| t <= now);
        }
        if let (Some(d), Some(exp)) = (
            a.time_before_expiry.as_deref().and_then(parse_iso8601),
            latest.exp,
        ) {
            return checked_before(exp, d).is_some_and(|t| t <= now);
        }
        false
    })
}

/// One pass over every vault.
pub fn tick(ctx: &Ctx) {
    let global_now = ctx.state.clock.now_global();
    for v in ctx.state.vaults() {
        let (name, deleted) = {
            let r = v.record.read();
            (r.name.clone(), r.deleted)
        };
        if let Some(d) = deleted {
            if d.scheduled_purge_date <= global_now {
                tracing::info!(vault = %name, "purging soft-deleted vault at end of retention");
                if let Err(e) = ctx.state.purge_vault(&v) {
                    tracing::error!(error = %e, "vault purge failed");
                }
            }
            continue;
        }
        let now = ctx.state.clock.now(&name);
        let (to_purge, to_rotate): (Vec<String>, Vec<String>) = {
            let keys = v.keys.read();
            let purge = keys
                .values()
                .filter(|e| {
                    e.record
                        .deleted
                        .is_some_and(|d| d.scheduled_purge_date <= now)
                })
                .map(|e| e.record.name.clone())
                .collect();
            let rotate = keys
                .values()
                .filter(|e| e.record.deleted.is_none() && rotation_due(&e.record, now))
                .map(|e| e.record.name.clone())
                .collect();
            (purge, rotate)
        };
        for k in to_purge {
            let r = ctx.state.mutate_key(&v, &k, |cur| match cur {
                Some(r) if r.deleted.is_some_and(|d| d.scheduled_purge_date <= now) => Ok(None),
                other => Ok(other.cloned()),
            });
            if let Err(e) = r {
                tracing::error!(key = %k, error = ?e, "scheduled key purge failed");
            }
        }
        for k in to_rotate {
            match crate::data_plane::rotate_now(ctx, &v, &k, now) {
                Ok(rec) => tracing::info!(
                    vault = %name,
                    key = %k,
                    versions = rec.versions.len(),
                    "rotated key by policy"
                ),
                Err(e) => tracing::error!(key = %k, error = ?e, "policy rotation failed"),
            }
        }
    }
}
