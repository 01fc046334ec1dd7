//! Operations on keys and workspaces, shared by the `tollgate keys` /
//! `tollgate workspaces` commands and (next) the management API, so both
//! validate the same way.

use std::collections::BTreeMap;

use crate::auth::keys::{self, IssuedKey, KeyError, NewKey};
use crate::config::{Config, PlanConfig};
use crate::store::{now, KeyRecord, StoreError, Stores, Workspace};

/// Longest workspace id and name accepted.
pub const MAX_WORKSPACE_ID_LEN: usize = 64;
const MAX_WORKSPACE_NAME_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("no workspace {0:?}")]
    NoSuchWorkspace(String),
    #[error("no key {0:?}, or it is already revoked")]
    NoSuchKey(String),
    #[error("workspace ids are 1 to {MAX_WORKSPACE_ID_LEN} characters of a-z, 0-9, '-' and '_'")]
    BadWorkspaceId,
    #[error("workspace names are 1 to {MAX_WORKSPACE_NAME_LEN} characters without control characters")]
    BadWorkspaceName,
    #[error("no plan {0:?} (plans are defined in the config)")]
    NoSuchPlan(String),
    #[error("{0:?} is not an IANA time zone name (like \"Europe/Berlin\")")]
    BadTimeZone(String),
}

/// What the management API answers when an operation is refused: the
/// HTTP-facing form of [`AdminError`] and of scope checks, mapped to the
/// error JSON once, where the gateway renders every error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagementError {
    #[error("This API key's scope may not {0}.")]
    InsufficientScope(&'static str),
    #[error("No {0}.")]
    NotFound(String),
    #[error("{0} already exists.")]
    Conflict(String),
    #[error("Invalid value for '{param}': {message}")]
    Invalid { param: &'static str, message: String },
    #[error("Missing required parameter: '{param}': {message}")]
    Missing { param: &'static str, message: String },
    /// The body is not the JSON asked for, with the failing field's path.
    #[error(transparent)]
    Body(#[from] crate::json::typed::TypedError),
    #[error("The store is unavailable; retry shortly.")]
    Unavailable,
}

impl From<AdminError> for ManagementError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Store(StoreError::Conflict(what)) => ManagementError::Conflict(what),
            AdminError::Store(e) => {
                tracing::warn!(error = %e, "store call failed");
                ManagementError::Unavailable
            }
            AdminError::Key(e) => ManagementError::Invalid { param: "key", message: e.to_string() },
            AdminError::NoSuchWorkspace(id) => ManagementError::NotFound(format!("workspace {id:?}")),
            AdminError::NoSuchKey(id) => ManagementError::NotFound(format!("key {id:?}")),
            e @ AdminError::BadWorkspaceId => ManagementError::Invalid { param: "id", message: e.to_string() },
            e @ AdminError::BadWorkspaceName => ManagementError::Invalid { param: "name", message: e.to_string() },
            e @ AdminError::NoSuchPlan(_) => ManagementError::Invalid { param: "plan", message: e.to_string() },
            e @ AdminError::BadTimeZone(_) => ManagementError::Invalid { param: "time_zone", message: e.to_string() },
        }
    }
}

impl From<StoreError> for ManagementError {
    fn from(e: StoreError) -> Self {
        AdminError::Store(e).into()
    }
}

/// Creates a workspace on one of the config's `plans`; its monthly credit
/// refresh follows `time_zone` (IANA name; `None` is UTC).
pub async fn create_workspace(
    stores: &Stores,
    plans: &BTreeMap<String, PlanConfig>,
    id: &str,
    name: Option<&str>,
    plan: &str,
    time_zone: Option<&str>,
) -> Result<Workspace, AdminError> {
    create_workspace_with(stores, plans, id, name, plan, time_zone, None).await
}

/// [`create_workspace`] with the settings only the API and the config take:
/// the `credits.low` threshold (micro-credits).
pub async fn create_workspace_with(
    stores: &Stores,
    plans: &BTreeMap<String, PlanConfig>,
    id: &str,
    name: Option<&str>,
    plan: &str,
    time_zone: Option<&str>,
    low_credits_threshold: Option<u64>,
) -> Result<Workspace, AdminError> {
    if let Some(tz) = time_zone.filter(|tz| crate::clock::parse_time_zone(tz).is_none()) {
        return Err(AdminError::BadTimeZone(tz.into()));
    }
    if !plans.contains_key(plan) {
        return Err(AdminError::NoSuchPlan(plan.into()));
    }
    if id.is_empty()
        || id.len() > MAX_WORKSPACE_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(AdminError::BadWorkspaceId);
    }
    let name = name.unwrap_or(id).trim();
    if name.is_empty() || name.chars().count() > MAX_WORKSPACE_NAME_LEN || name.chars().any(char::is_control) {
        return Err(AdminError::BadWorkspaceName);
    }
    let workspace = Workspace {
        id: id.into(),
        name: name.into(),
        plan: plan.into(),
        time_zone: time_zone.map(Into::into),
        low_credits_threshold,
        created_at: now(),
    };
    stores.workspaces.insert_workspace(&workspace).await?;
    Ok(workspace)
}

/// Issues a key into an existing workspace; the plaintext is in the result only.
pub async fn create_key(stores: &Stores, new: NewKey) -> Result<IssuedKey, AdminError> {
    if stores.workspaces.workspace(&new.workspace).await?.is_none() {
        return Err(AdminError::NoSuchWorkspace(new.workspace));
    }
    let issued = keys::issue(new, now())?;
    stores.keys.insert_key(&issued.record).await?;
    Ok(issued)
}

pub async fn list_keys(stores: &Stores, workspace: &str) -> Result<Vec<KeyRecord>, AdminError> {
    if stores.workspaces.workspace(workspace).await?.is_none() {
        return Err(AdminError::NoSuchWorkspace(workspace.into()));
    }
    Ok(stores.keys.list_keys(workspace).await?)
}

/// Revokes a key; returns its record as it was before.
pub async fn revoke_key(stores: &Stores, id: &str) -> Result<KeyRecord, AdminError> {
    let record = stores.keys.key_by_id(id).await?.ok_or_else(|| AdminError::NoSuchKey(id.into()))?;
    if !stores.keys.revoke_key(id, now()).await? {
        return Err(AdminError::NoSuchKey(id.into()));
    }
    Ok(record)
}

use crate::scope::ADMIN_WORKSPACE;

/// On a store's first start, creates the `admin` workspace and — unless the
/// config names an admin key — an admin key in it, returning the key (its
/// plaintext is shown once by the caller). Later starts return `None`. Creating the workspace is the lock: of several
/// replicas starting at once on one Redis, only the one that created it
/// issues the key.
pub async fn bootstrap_admin(stores: &Stores, config: &Config) -> Result<Option<IssuedKey>, AdminError> {
    let configured = config.keys.iter().any(|k| k.scope == crate::scope::Scope::Admin);
    if stores.workspaces.workspace(ADMIN_WORKSPACE).await?.is_some() {
        return Ok(None);
    }
    if configured {
        // An admin key is configured: its workspace must exist, no key is issued.
        return match create_workspace(stores, &config.plans, ADMIN_WORKSPACE, Some("Administration"), "default", None)
            .await
        {
            Ok(_) | Err(AdminError::Store(StoreError::Conflict(_))) => Ok(None),
            Err(e) => Err(e),
        };
    }
    let plan = crate::config::DEFAULT_PLAN;
    match create_workspace(stores, &config.plans, ADMIN_WORKSPACE, Some("Administration"), plan, None).await {
        Err(AdminError::Store(StoreError::Conflict(_))) => return Ok(None),
        other => other?,
    };
    let new = NewKey {
        name: "bootstrap admin".into(),
        workspace: ADMIN_WORKSPACE.into(),
        scope: crate::scope::Scope::Admin,
        expires_at: None,
        rpm: None,
        tpm: None,
        models: None,
    };
    Ok(Some(create_key(stores, new).await?))
}

/// Creates the config's `[workspaces.*]` that the store does not have yet.
/// Existing workspaces are left as they are (the store is the source of truth
/// once a workspace exists); returns the ids created.
pub async fn seed_workspaces(stores: &Stores, config: &Config) -> Result<Vec<String>, AdminError> {
    let mut created = Vec::new();
    for (id, ws) in &config.workspaces {
        if stores.workspaces.workspace(id).await?.is_some() {
            continue;
        }
        let (name, tz, low) = (ws.name.as_deref(), ws.time_zone.as_deref(), ws.low_credits_threshold);
        match create_workspace_with(stores, &config.plans, id, name, &ws.plan, tz, low).await {
            Ok(_) => created.push(id.clone()),
            Err(AdminError::Store(StoreError::Conflict(_))) => {} // another replica was first
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}
