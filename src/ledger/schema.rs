//! The ledger schema as ordered migrations, one list and one numbering for both backends.
//! Every statement so far is portable SQL (BIGINT/TEXT, partial indexes) that SQLite and
//! PostgreSQL run as written; a migration whose text must differ would carry a PostgreSQL
//! variant of its statements beside the SQLite ones, under the same version.

/// One migration: a version and the statements that bring the schema to it.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub statements: &'static [&'static str],
}

/// Every migration, oldest first. Never edit a released one: append a new one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        statements: &[
            "CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            pipeline TEXT NOT NULL,
            tenant TEXT NOT NULL,
            script_hash TEXT NOT NULL,
            started_at BIGINT NOT NULL,
            finished_at BIGINT,
            status TEXT NOT NULL,
            summary TEXT
        )",
            "CREATE TABLE items (
            pipeline TEXT NOT NULL,
            tenant TEXT NOT NULL,
            item_key TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts BIGINT NOT NULL DEFAULT 0,
            next_at BIGINT,
            lease_owner TEXT,
            lease_until BIGINT,
            script_hash TEXT,
            payload TEXT,
            result TEXT,
            last_error TEXT,
            run_id TEXT,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (pipeline, tenant, item_key)
        )",
            "CREATE INDEX items_by_state ON items (pipeline, tenant, state)",
            "CREATE TABLE checkpoints (
            pipeline TEXT NOT NULL,
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            run_id TEXT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (pipeline, tenant, name)
        )",
            "CREATE TABLE kv (
            pipeline TEXT NOT NULL,
            tenant TEXT NOT NULL,
            k TEXT NOT NULL,
            value TEXT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (pipeline, tenant, k)
        )",
            "CREATE TABLE events (
            source TEXT NOT NULL,
            event_id TEXT NOT NULL,
            received_at BIGINT NOT NULL,
            PRIMARY KEY (source, event_id)
        )",
            "CREATE TABLE audit (
            seq BIGINT PRIMARY KEY,
            at BIGINT NOT NULL,
            pipeline TEXT NOT NULL,
            tenant TEXT NOT NULL,
            run_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            data TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )",
        ],
    },
    Migration {
        version: 2,
        name: "run heartbeats",
        statements: &[
            "ALTER TABLE runs ADD COLUMN heartbeat_at BIGINT",
            "ALTER TABLE runs ADD COLUMN owner TEXT",
            "UPDATE runs SET status = 'abandoned' WHERE status = 'running'",
            "CREATE UNIQUE INDEX runs_one_running ON runs (pipeline, tenant) WHERE status = 'running'",
        ],
    },
    Migration {
        version: 3,
        name: "schedule fires",
        statements: &["CREATE TABLE schedule_fires (
            pipeline TEXT NOT NULL,
            tenant TEXT NOT NULL,
            fire_at BIGINT NOT NULL,
            node TEXT NOT NULL,
            claimed_at BIGINT NOT NULL,
            PRIMARY KEY (pipeline, tenant, fire_at)
        )"],
    },
    Migration {
        version: 4,
        name: "webhook events",
        statements: &[
            "CREATE TABLE webhook_events (
            tenant TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            event_id TEXT NOT NULL,
            received_at BIGINT NOT NULL,
            body TEXT NOT NULL,
            handed_at BIGINT,
            PRIMARY KEY (tenant, pipeline, event_id)
        )",
            "CREATE INDEX webhook_events_unhanded ON webhook_events (tenant, pipeline, handed_at)",
        ],
    },
    Migration {
        version: 5,
        name: "shared rate budgets",
        statements: &["CREATE TABLE rate_budgets (
            tenant TEXT NOT NULL,
            family TEXT NOT NULL,
            tat_us BIGINT NOT NULL,
            rate DOUBLE PRECISION,
            rate_at_us BIGINT,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (tenant, family)
        )"],
    },
    Migration {
        version: 6,
        name: "cluster nodes and item leases",
        statements: &[
            "CREATE TABLE nodes (
            node TEXT PRIMARY KEY,
            started_at BIGINT NOT NULL,
            heartbeat_at BIGINT NOT NULL,
            draining_at BIGINT,
            listen TEXT,
            version TEXT NOT NULL
        )",
            "CREATE INDEX items_by_lease ON items (lease_owner)",
        ],
    },
];
