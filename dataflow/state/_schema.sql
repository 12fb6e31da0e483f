CREATE TABLE IF NOT EXISTS trigger_state (
    workflow   TEXT NOT NULL,
    trigger    TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (workflow, trigger, key)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    workflow     TEXT NOT NULL,
    trigger      TEXT NOT NULL,
    scheduled_at TEXT,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    status       TEXT NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 1,
    error        TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_trigger ON runs (workflow, trigger, started_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow     TEXT NOT NULL,
    trigger      TEXT NOT NULL,
    payload      TEXT NOT NULL,
    error        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    retried_at   TEXT,
    retry_status TEXT
);
