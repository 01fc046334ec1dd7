//! The embedded store's schema: every table of every subsystem that keeps
//! state in the SQLite file, as the ordered migrations that create it. Apart
//! from the store's code so the schema reads in one place; append only (a
//! migration that ran is never edited: `PRAGMA user_version` counts them).

/// Schema migrations, applied in order; `PRAGMA user_version` counts how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE workspaces (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        plan TEXT NOT NULL,
        time_zone TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL,
        workspace TEXT NOT NULL,
        scope TEXT NOT NULL,
        expires_at INTEGER,
        rpm INTEGER,
        tpm INTEGER,
        models TEXT,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
    );
    CREATE INDEX api_keys_by_workspace ON api_keys (workspace, created_at);
"#,
    r#"
    CREATE TABLE credit_balances (
        workspace TEXT NOT NULL,
        kind TEXT NOT NULL,
        period TEXT NOT NULL,
        plan INTEGER NOT NULL,
        top_up INTEGER NOT NULL,
        uncollected INTEGER NOT NULL,
        PRIMARY KEY (workspace, kind)
    );
    CREATE TABLE usage_daily (
        workspace TEXT NOT NULL,
        day TEXT NOT NULL,
        key_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        requests INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        credits INTEGER NOT NULL,
        PRIMARY KEY (workspace, day, key_id, agent)
    );
"#,
    r#"
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        workspace TEXT NOT NULL,
        type TEXT NOT NULL,
        ts INTEGER NOT NULL,
        json TEXT NOT NULL
    );
    CREATE INDEX events_by_workspace ON events (workspace, seq);
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        workspace TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        description TEXT,
        secret TEXT NOT NULL,
        previous_secret TEXT,
        previous_until_ms INTEGER,
        created_at INTEGER NOT NULL,
        disabled_at INTEGER,
        disabled_reason TEXT,
        failures INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX webhooks_by_workspace ON webhooks (workspace, created_at);
    CREATE TABLE deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook TEXT NOT NULL,
        workspace TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        body TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        due_at INTEGER NOT NULL,
        lease_until INTEGER NOT NULL DEFAULT 0,
        queued_at INTEGER NOT NULL
    );
    CREATE INDEX deliveries_by_due ON deliveries (due_at);
    CREATE INDEX deliveries_by_webhook ON deliveries (webhook);
    CREATE TABLE webhook_attempts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook TEXT NOT NULL,
        json TEXT NOT NULL
    );
    CREATE INDEX webhook_attempts_by_webhook ON webhook_attempts (webhook, seq);
"#,
    "ALTER TABLE workspaces ADD COLUMN low_credits_threshold INTEGER;",
    // Stored responses (`responses::embedded`): one row per turn, its items in
    // order beside it. `json` is the last column so that reading ids and
    // positions never touches the overflow pages of a large item.
    r#"
    CREATE TABLE responses (
        scope TEXT NOT NULL,
        id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        previous_response_id TEXT,
        response TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (scope, id)
    );
    CREATE INDEX responses_by_expiry ON responses (expires_at);
    CREATE TABLE response_items (
        scope TEXT NOT NULL,
        response_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        output INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        json TEXT NOT NULL,
        PRIMARY KEY (scope, response_id, position),
        FOREIGN KEY (scope, response_id) REFERENCES responses (scope, id) ON DELETE CASCADE
    );
"#,
    // Stored items by id within a scope, for `item_reference` lookups
    // (`ResponseStore::items`); the rowid, in every index, orders them by
    // when they were stored. Built over the rows already there.
    "CREATE INDEX response_items_by_item ON response_items (scope, item_id);",
    // Named conversations (`conversations::embedded`): a session or a chat
    // is a record naming its newest turn in `responses`, with the summary its
    // memory policy keeps and the lease of the message being answered;
    // `version` makes every change a compare-and-set.
    r#"
    CREATE TABLE threads (
        scope TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        record TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (scope, kind, name)
    );
    CREATE INDEX threads_by_expiry ON threads (expires_at);
"#,
    // Workspace agents (`agents::store::embedded`): one JSON record per
    // (workspace, id), listed by id; a workspace's default agent beside them.
    r#"
    CREATE TABLE agents (
        workspace TEXT NOT NULL,
        id TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (workspace, id)
    );
    CREATE TABLE default_agents (
        workspace TEXT PRIMARY KEY,
        agent TEXT NOT NULL
    );
"#,
    // The shared record store (`records::embedded`): the thread table
    // becomes every collection's (sessions and chats keep their rows;
    // schedules, tasks, notes and missions join them).
    r#"
    ALTER TABLE threads RENAME TO records;
    ALTER TABLE records RENAME COLUMN kind TO collection;
    ALTER TABLE records RENAME COLUMN name TO id;
"#,
    // The scheduler's timelines (`schedules::timeline::embedded`): each
    // schedule at its next due time, each run in progress at the end of its
    // lease; a claim is a compare-and-set on `at_ms`.
    r#"
    CREATE TABLE timeline (
        line TEXT NOT NULL,
        member TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (line, member)
    );
    CREATE INDEX timeline_by_time ON timeline (line, at_ms);
"#,
    // A delivery of a logged event refers to its row in `events` instead of
    // carrying a copy of its JSON (`body` is then empty), so queuing,
    // claiming and finishing it write a small row. Pruning the log copies an
    // event's JSON into the deliveries still waiting for it first.
    "ALTER TABLE deliveries ADD COLUMN event_seq INTEGER;",
];
