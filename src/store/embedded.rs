//! The embedded backend: one SQLite file in WAL mode, owned by one thread.
//!
//! Why SQLite (rusqlite, bundled) rather than redb: the stores of later stages
//! need secondary indexes and range queries — the event log paginated by cursor,
//! usage totals per key/agent/day — which SQL gives for free and a key-value
//! store would make us hand-write. Why one thread: SQLite calls block, and the
//! async runtime must never wait on disk; every call is a closure sent to the
//! store's thread, answered through a oneshot channel. WAL keeps readers and
//! the writer from blocking each other and makes a commit one append.
//!
//! Durability: each write is one transaction, committed before the call
//! returns (`synchronous = NORMAL` in WAL mode: a power cut can lose the last
//! commits, a process crash — kill -9 — cannot).
//!
//! When the file is unusable (disk full, permissions), calls fail with
//! [`StoreError::Unavailable`]; the auth layer then refuses keys it has not
//! cached (fail-closed: an unverifiable key is not a valid key).

use std::path::Path;
use std::sync::mpsc;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::oneshot;

mod migrations;

use super::{KeyRecord, KeyStore, StoreError, Workspace, WorkspaceStore};
use crate::scope::Scope;
use migrations::MIGRATIONS;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle to the store's thread; cheap to share behind an `Arc`.
pub struct EmbeddedStore {
    jobs: mpsc::Sender<Job>,
    /// Every call's time on (and waiting for) the store thread.
    pub stats: std::sync::Arc<super::stats::OpStats>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the database file and migrates it.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path).map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        prepare(&mut conn)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tollgate-store".into())
            .spawn(move || {
                // Runs until every handle is dropped; each job answers its caller.
                for job in queue {
                    job(&mut conn);
                }
            })
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(EmbeddedStore { jobs, stats: Default::default() })
    }

    /// Runs `f` on the store's thread and awaits its result.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.jobs.send(job).map_err(|_| unavailable("the store thread has stopped".into()))?;
        let result = answer.await.map_err(|_| unavailable("the store thread has stopped".into()))?;
        self.stats.observe_result(started, &result);
        result
    }
}

impl EmbeddedStore {
    /// Whether the store's thread answers and the file can be read.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.call(|conn| conn.query_row("SELECT count(*) FROM pragma_user_version", [], |_| Ok(())).map_err(sql)).await
    }
}

fn prepare(conn: &mut Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sql)?;
    let version = usize::try_from(version).map_err(|_| StoreError::Corrupt(format!("schema version {version}")))?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {version}, newer than this build ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction().map_err(sql)?;
        tx.execute_batch(migration).map_err(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(sql)?;
        tx.commit().map_err(sql)?;
    }
    Ok(())
}

fn unavailable(detail: String) -> StoreError {
    StoreError::Unavailable(detail)
}

pub(crate) fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Maps a UNIQUE/PRIMARY KEY violation to `Conflict(what)`.
pub(crate) fn insert_error(what: String) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict(what),
        _ => sql(e),
    }
}

const KEY_COLUMNS: &str =
    "id, hash, prefix, name, workspace, scope, expires_at, rpm, tpm, models, created_at, last_used_at, revoked_at";

/// Reads a row; the outer error is SQLite's, the inner one a value the
/// gateway cannot interpret (an unknown scope, unreadable JSON).
fn key_from_row(row: &Row<'_>) -> rusqlite::Result<Result<KeyRecord, StoreError>> {
    let id: String = row.get(0)?;
    let scope: String = row.get(5)?;
    let models: Option<String> = row.get(9)?;
    let Some(scope) = Scope::parse(&scope) else {
        return Ok(Err(StoreError::Corrupt(format!("key {id} has unknown scope {scope:?}"))));
    };
    let models = match models.map(|m| serde_json::from_str::<Vec<String>>(&m)).transpose() {
        Ok(models) => models,
        Err(e) => return Ok(Err(StoreError::Corrupt(format!("models of key {id}: {e}")))),
    };
    Ok(Ok(KeyRecord {
        id,
        hash: row.get(1)?,
        prefix: row.get(2)?,
        name: row.get(3)?,
        workspace: row.get(4)?,
        scope,
        expires_at: row.get(6)?,
        rpm: row.get(7)?,
        tpm: row.get(8)?,
        models,
        created_at: row.get(10)?,
        last_used_at: row.get(11)?,
        revoked_at: row.get(12)?,
    }))
}

fn query_keys(conn: &Connection, filter: &str, param: &dyn rusqlite::ToSql) -> Result<Vec<KeyRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE {filter}")).map_err(sql)?;
    let rows = stmt.query_map([param], key_from_row).map_err(sql)?;
    rows.map(|r| r.map_err(sql)?).collect()
}

#[async_trait]
impl KeyStore for EmbeddedStore {
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.call(move |conn| {
            let models = key.models.as_ref().map(|m| serde_json::to_string(m).expect("strings serialise"));
            conn.prepare_cached(&format!(
                "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))
            .map_err(sql)?
            .execute(params![
                key.id,
                key.hash,
                key.prefix,
                key.name,
                key.workspace,
                key.scope.as_str(),
                key.expires_at,
                key.rpm,
                key.tpm,
                models,
                key.created_at,
                key.last_used_at,
                key.revoked_at
            ])
            .map_err(insert_error(format!("key {}", key.id)))?;
            Ok(())
        })
        .await
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        let hash = hash.to_owned();
        self.call(move |conn| Ok(query_keys(conn, "hash = ?1", &hash)?.pop())).await
    }

    async fn key_by_id(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| Ok(query_keys(conn, "id = ?1", &id)?.pop())).await
    }

    async fn list_keys(&self, workspace: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let workspace = workspace.to_owned();
        self.call(move |conn| query_keys(conn, "workspace = ?1 ORDER BY created_at, id", &workspace)).await
    }

    async fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
                .map_err(sql)?
                .execute(params![id, at])
                .map_err(sql)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn touch_keys(&self, used: &[(String, i64)]) -> Result<(), StoreError> {
        let used = used.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(sql)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                    )
                    .map_err(sql)?;
                for (id, at) in &used {
                    stmt.execute(params![id, at]).map_err(sql)?;
                }
            }
            tx.commit().map_err(sql)
        })
        .await
    }
}

const WORKSPACE_COLUMNS: &str = "id, name, plan, time_zone, created_at, low_credits_threshold";

fn workspace_from_row(row: &Row<'_>) -> rusqlite::Result<Workspace> {
    Ok(Workspace {
        id: row.get(0)?,
        name: row.get(1)?,
        plan: row.get(2)?,
        time_zone: row.get(3)?,
        created_at: row.get(4)?,
        low_credits_threshold: row.get::<_, Option<i64>>(5)?.map(|t| t.max(0) as u64),
    })
}

#[async_trait]
impl WorkspaceStore for EmbeddedStore {
    async fn insert_workspace(&self, ws: &Workspace) -> Result<(), StoreError> {
        let ws = ws.clone();
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO workspaces (id, name, plan, time_zone, created_at, low_credits_threshold) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(sql)?
            .execute(params![
                ws.id,
                ws.name,
                ws.plan,
                ws.time_zone,
                ws.created_at,
                ws.low_credits_threshold.map(|t| t.min(i64::MAX as u64) as i64)
            ])
            .map_err(insert_error(format!("workspace {}", ws.id)))?;
            Ok(())
        })
        .await
    }

    async fn workspace(&self, id: &str) -> Result<Option<Workspace>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.prepare_cached(&format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = ?1"))
                .map_err(sql)?
                .query_row([id], workspace_from_row)
                .optional()
                .map_err(sql)
        })
        .await
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        self.call(|conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY id")).map_err(sql)?;
            let rows = stmt.query_map([], workspace_from_row).map_err(sql)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tollgate-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("tollgate.db")
    }

    fn key(id: &str, hash: &str) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            hash: hash.into(),
            prefix: "tg_0123abcd".into(),
            name: "ci".into(),
            workspace: "ws1".into(),
            scope: Scope::Chat,
            expires_at: Some(2_000_000_000),
            rpm: Some(60),
            tpm: None,
            models: Some(vec!["demo".into()]),
            created_at: 1_700_000_000,
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[tokio::test]
    async fn keys_round_trip_conflict_revoke_and_survive_reopening() {
        let path = temp_db("keys");
        {
            let store = EmbeddedStore::open(&path).unwrap();
            store.insert_key(&key("key_a", "h1")).await.unwrap();
            assert_eq!(store.insert_key(&key("key_a", "h2")).await, Err(StoreError::Conflict("key key_a".into())));
            assert!(matches!(store.insert_key(&key("key_b", "h1")).await, Err(StoreError::Conflict(_))));
            assert_eq!(store.key_by_hash("h1").await.unwrap(), Some(key("key_a", "h1")));
            assert_eq!(store.key_by_hash("nope").await.unwrap(), None);
            assert!(store.revoke_key("key_a", 1_800_000_000).await.unwrap());
            assert!(!store.revoke_key("key_a", 1_900_000_000).await.unwrap(), "the first revocation stands");
            store.touch_keys(&[("key_a".into(), 1_750_000_000)]).await.unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        let listed = store.list_keys("ws1").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].revoked_at, Some(1_800_000_000));
        assert_eq!(listed[0].last_used_at, Some(1_750_000_000));
        assert_eq!(store.key_by_id("key_a").await.unwrap().unwrap().models, Some(vec!["demo".to_string()]));
    }

    #[tokio::test]
    async fn workspaces_round_trip() {
        let store = EmbeddedStore::open(&temp_db("ws")).unwrap();
        let ws = Workspace {
            id: "ws1".into(),
            name: "One".into(),
            plan: "free".into(),
            time_zone: None,
            low_credits_threshold: Some(5),
            created_at: 1,
        };
        store.insert_workspace(&ws).await.unwrap();
        assert!(matches!(store.insert_workspace(&ws).await, Err(StoreError::Conflict(_))));
        assert_eq!(store.workspace("ws1").await.unwrap(), Some(ws.clone()));
        assert_eq!(store.list_workspaces().await.unwrap(), vec![ws]);
    }
}
