//! `bulkhead apply`: make the tenants of a file exist as described.
//!
//! Tenants already present are brought in line first, one at a time and in
//! the file's order (so a number that leaves one of them is free for a new
//! tenant of the same file); the new tenants are then started several at
//! once. A worker start waits mostly on the kernel (fork, cgroup migration,
//! the store's first fsyncs), so starting them one after another left both
//! cores largely idle: 35 tenants/s, against the 100 asked for in #9.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::tenants::LimitChange;
use super::{AdminError, Tenants};
use crate::api::{ApplyRequest, ApplyResult, TenantAdded, TenantSpec};
use bulkhead_shared::Number;

/// New tenants started at once. Registration stays one at a time (uids,
/// ports, numbers); what runs concurrently is the workers' start.
const STARTS_AT_ONCE: usize = 8;

/// Makes the tenants of a file exist as described; a tenant already present
/// gets its numbers, limits and trunk set to exactly the listed ones.
pub async fn apply(t: &Arc<Tenants>, r: ApplyRequest) -> Result<ApplyResult, AdminError> {
    let mut result = ApplyResult {
        created: vec![],
        updated: vec![],
        unchanged: vec![],
    };
    let mut new = Vec::new();
    for spec in r.tenants {
        let Some(current) = t.numbers_of(&spec.id) else {
            new.push(spec);
            continue;
        };
        let id = spec.id.to_string();
        if update(t, spec, current).await? {
            result.updated.push(id);
        } else {
            result.unchanged.push(id);
        }
    }
    result.created = add_all(t, new).await?;
    Ok(result)
}

/// Sets an existing tenant, whose numbers are `current`, to `spec`;
/// whether anything changed.
async fn update(
    t: &Arc<Tenants>,
    spec: TenantSpec,
    current: Vec<Number>,
) -> Result<bool, AdminError> {
    let id = spec.id;
    let mut changed = false;
    for n in spec.numbers.iter().filter(|n| !current.contains(n)) {
        t.add_number(&id, n.clone()).await?;
        changed = true;
    }
    for n in current.iter().filter(|n| !spec.numbers.contains(n)) {
        t.remove_number(n).await?;
        changed = true;
    }
    let limits = spec.limits.unwrap_or_default();
    changed |= t.set_limits(&id, limits, LimitChange::Replace).await?;
    let allow = spec.trunk_allow.unwrap_or_default();
    let auth = spec
        .trunk_auth
        .map(|a| a.to_auth(&id))
        .transpose()
        .map_err(|e| AdminError::BadRequest(format!("tenant {id}: {e}")))?;
    changed |= t
        .set_trunk(&id, |trunk| {
            trunk.allow = allow;
            trunk.auth = auth;
        })
        .await?;
    Ok(changed)
}

/// Adds the tenants, [`STARTS_AT_ONCE`] at a time, and returns them in the
/// given order. After the first failure no further tenant is started; the
/// ones under way finish, and the error names every tenant that was
/// created (their initial tokens are not shown: issue new ones).
async fn add_all(t: &Arc<Tenants>, specs: Vec<TenantSpec>) -> Result<Vec<TenantAdded>, AdminError> {
    let mut done: Vec<Option<TenantAdded>> = specs.iter().map(|_| None).collect();
    let mut failure: Option<(usize, AdminError)> = None;
    let mut pending = specs.into_iter().enumerate();
    let mut running = JoinSet::new();
    loop {
        while failure.is_none() && running.len() < STARTS_AT_ONCE {
            let Some((i, spec)) = pending.next() else {
                break;
            };
            let t = t.clone();
            running.spawn(async move { (i, t.add(spec).await) });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        // A panicked add is a failure like any other; returning at once
        // would drop the set and abort the adds still under way mid-start.
        let (i, added) = match joined {
            Ok(done) => done,
            Err(e) => (
                usize::MAX,
                Err(AdminError::Failed(format!("a tenant add failed: {e}"))),
            ),
        };
        match added {
            Ok(a) => done[i] = Some(a),
            // The first in the file's order is reported.
            Err(e) if failure.as_ref().is_none_or(|(j, _)| i < *j) => failure = Some((i, e)),
            Err(_) => {}
        }
    }
    let created: Vec<TenantAdded> = done.into_iter().flatten().collect();
    match failure {
        None => Ok(created),
        Some((_, e)) => Err(naming_created(e, &created)),
    }
}

fn naming_created(e: AdminError, created: &[TenantAdded]) -> AdminError {
    if created.is_empty() {
        return e;
    }
    let ids: Vec<&str> = created.iter().map(|a| a.tenant.id.as_str()).collect();
    let note = |m: String| {
        format!(
            "{m}; created before it failed: {} (issue their tokens with `bulkhead tenant token ID`)",
            ids.join(", ")
        )
    };
    match e {
        AdminError::BadRequest(m) => AdminError::BadRequest(note(m)),
        AdminError::NotFound(m) => AdminError::NotFound(note(m)),
        AdminError::Conflict(m) => AdminError::Conflict(note(m)),
        AdminError::Failed(m) => AdminError::Failed(note(m)),
    }
}
