-- ingot schema, migration 1. Applied through PRAGMA user_version; later changes are new steps.
-- Times are integer milliseconds since the Unix epoch. Ids are 24-hex ObjectId-style text.
-- Every *_sealed column holds an AES-256-GCM envelope (see src/crypto.rs), never plaintext.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    env          TEXT NOT NULL CHECK (env IN ('development', 'production')),
    secret_hash  BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    public_key     BLOB NOT NULL,
    private_sealed BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    retired_at     INTEGER
);

CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    env        TEXT NOT NULL CHECK (env IN ('development', 'production')),
    username   TEXT NOT NULL,
    full_name  TEXT,
    disabled   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (env, username)
);
CREATE INDEX users_env_id ON users (env, id);

CREATE TABLE credentials (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type        TEXT NOT NULL,
    name        TEXT,
    data_sealed BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX credentials_user ON credentials (user_id);

-- A customer's integration template: its workflows (with their template ids and blocks) as JSON.
CREATE TABLE integrations (
    id              TEXT PRIMARY KEY,
    env             TEXT NOT NULL,
    name            TEXT NOT NULL,
    app             TEXT NOT NULL,
    credential_type TEXT,
    version         INTEGER NOT NULL DEFAULT 1,
    workflows       TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (env, name)
);

-- A user's installed workflows; they go with the user (and with a force-deleted integration).
CREATE TABLE workflows (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    integration_id     TEXT REFERENCES integrations (id) ON DELETE CASCADE,
    parent_workflow_id TEXT,
    credential_id      TEXT REFERENCES credentials (id) ON DELETE SET NULL,
    name               TEXT NOT NULL,
    trigger            TEXT NOT NULL,
    blocks             TEXT NOT NULL,
    active             INTEGER NOT NULL DEFAULT 0,
    version            INTEGER NOT NULL DEFAULT 1,
    installed_version  INTEGER,
    installed_at       INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX workflows_user ON workflows (user_id);
CREATE INDEX workflows_parent ON workflows (parent_workflow_id);
CREATE INDEX workflows_integration ON workflows (integration_id);
CREATE INDEX workflows_credential ON workflows (credential_id);

-- Runs of a workflow; they go with the workflow (and so with the user).
-- status: queued -> running -> succeeded | failed | cancelled.
CREATE TABLE executions (
    id          TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    inputs      TEXT NOT NULL,
    results     TEXT NOT NULL DEFAULT '[]',
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    stopped_at  INTEGER
);
CREATE INDEX executions_workflow ON executions (workflow_id, created_at);
CREATE INDEX executions_pending ON executions (status, created_at) WHERE status IN ('queued', 'running');

-- Error logs outlive their user on purpose: removed by DELETE /users/{id}/logs.
CREATE TABLE error_logs (
    id           TEXT PRIMARY KEY,
    env          TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    workflow_id  TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    block_id     TEXT NOT NULL,
    block_type   TEXT NOT NULL,
    block_name   TEXT NOT NULL,
    error        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX error_logs_user ON error_logs (env, user_id);
CREATE INDEX error_logs_workflow ON error_logs (workflow_id, created_at);
CREATE INDEX error_logs_env_time ON error_logs (env, created_at);

-- Where each environment's error logs go. Non-secret settings as JSON; secrets sealed.
CREATE TABLE delivery_targets (
    env                    TEXT NOT NULL,
    target                 TEXT NOT NULL CHECK (target IN ('webhook', 'eventbridge')),
    enabled                INTEGER NOT NULL DEFAULT 0,
    config                 TEXT NOT NULL,
    secret_sealed          BLOB,
    secret_hint            TEXT,
    previous_secret_sealed BLOB,
    previous_secret_until  INTEGER,
    failing                TEXT,
    updated_at             INTEGER NOT NULL,
    PRIMARY KEY (env, target)
);

-- The outbox: one row per error log and enabled target, written with the error log.
-- status: pending -> delivered | failed.
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    env             TEXT NOT NULL,
    target          TEXT NOT NULL,
    error_log_id    TEXT NOT NULL REFERENCES error_logs (id) ON DELETE CASCADE,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (target, next_attempt_at, created_at) WHERE status = 'pending';
CREATE INDEX deliveries_log ON deliveries (error_log_id);
CREATE INDEX deliveries_env ON deliveries (env, target, status, created_at);

-- Every attempt to deliver, kept with its delivery.
CREATE TABLE delivery_attempts (
    delivery_id  TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at INTEGER NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    duration_ms  INTEGER NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempted_at);

-- migration 2: integration versions, icons, and credential types an integration declares.
ALTER TABLE integrations ADD COLUMN icon TEXT;
ALTER TABLE integrations ADD COLUMN credential_types TEXT NOT NULL DEFAULT '[]';
-- An integration's OAuth 2.0 provider (JSON, no secret) and its client secret, sealed.
ALTER TABLE integrations ADD COLUMN oauth TEXT;
ALTER TABLE integrations ADD COLUMN oauth_secret_sealed BLOB;

-- Every saved version of an integration, the newest equal to the integrations row. A user's
-- workflow stays on the version it was installed from until it is upgraded.
CREATE TABLE integration_versions (
    integration_id   TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    version          INTEGER NOT NULL,
    app              TEXT NOT NULL,
    credential_type  TEXT,
    icon             TEXT,
    credential_types TEXT NOT NULL DEFAULT '[]',
    oauth            TEXT,
    workflows        TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (integration_id, version)
) WITHOUT ROWID;
INSERT INTO integration_versions (integration_id, version, app, credential_type, workflows, created_at)
    SELECT id, version, app, credential_type, workflows, updated_at FROM integrations;

-- Install links: a hosted install page for one user and integration. Only the link's SHA-256
-- is kept; the link works until it expires or installs once.
CREATE TABLE install_links (
    id             TEXT PRIMARY KEY,
    hash           BLOB NOT NULL UNIQUE,
    env            TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    integration_id TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER
);
CREATE INDEX install_links_user ON install_links (user_id);

-- Headless installations between POST /headless/startInstallation and completeInstallation.
CREATE TABLE installations (
    id             TEXT PRIMARY KEY,
    env            TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    integration_id TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    workflow_ids   TEXT NOT NULL,
    credential_ids TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    completed_at   INTEGER
);
CREATE INDEX installations_user ON installations (user_id);

-- OAuth 2.0 authorization requests waiting for the provider's callback: the state's SHA-256,
-- whom it is for, and its PKCE verifier, sealed. Single use, ten minutes.
CREATE TABLE oauth_states (
    id              TEXT PRIMARY KEY,
    hash            BLOB NOT NULL UNIQUE,
    env             TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    integration_id  TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    credential_name TEXT,
    verifier_sealed BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    used_at         INTEGER
);
CREATE INDEX oauth_states_user ON oauth_states (user_id);

-- Console sign-ins: an API key exchanged for a cookie. Only the cookie's SHA-256 is kept; a
-- session ends with its key, on sign-out, after INGOT_CONSOLE_IDLE of no use, or after 12 h.
CREATE TABLE console_sessions (
    id           TEXT PRIMARY KEY,
    hash         BLOB NOT NULL UNIQUE,
    env          TEXT NOT NULL,
    key_id       TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    csrf         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);

-- migration 3: the RSA key that signs every outgoing request (X-Alloy-Signature). The public
-- half in the clear as SubjectPublicKeyInfo DER (it is published), the private half as PKCS#8
-- DER, sealed. One row: made on first need, replaced by `ingot keys rotate-request-signing`.
CREATE TABLE request_signing_keys (
    id             TEXT PRIMARY KEY,
    public_key     BLOB NOT NULL,
    private_sealed BLOB NOT NULL,
    created_at     INTEGER NOT NULL
);

-- migration 4: /logs at size. Each index ends in (created_at, id), the order /logs pages in, so
-- a page is read in index order with no sort; the count of an environment's logs is kept by
-- triggers instead of counted on every /logs call.
DROP INDEX error_logs_user;
DROP INDEX error_logs_workflow;
DROP INDEX error_logs_env_time;
CREATE INDEX error_logs_user ON error_logs (env, user_id, created_at, id);
CREATE INDEX error_logs_workflow ON error_logs (env, workflow_id, created_at, id);
CREATE INDEX error_logs_env_time ON error_logs (env, created_at, id);
CREATE TABLE error_log_counts (
    env TEXT PRIMARY KEY,
    n   INTEGER NOT NULL
);
INSERT INTO error_log_counts (env, n) SELECT env, count(*) FROM error_logs GROUP BY env;
CREATE TRIGGER error_log_counted AFTER INSERT ON error_logs BEGIN
    INSERT INTO error_log_counts (env, n) VALUES (NEW.env, 1)
        ON CONFLICT (env) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER error_log_uncounted AFTER DELETE ON error_logs BEGIN
    UPDATE error_log_counts SET n = n - 1 WHERE env = OLD.env;
END;

-- migration 5: how many logs one user or one workflow has, kept by triggers like an
-- environment's total, so that /logs filtered by either answers its total without counting
-- the user's or workflow's logs over the index on every page.
CREATE TABLE error_log_tallies (
    env  TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('user', 'workflow')),
    key  TEXT NOT NULL,
    n    INTEGER NOT NULL,
    PRIMARY KEY (env, kind, key)
) WITHOUT ROWID;
INSERT INTO error_log_tallies (env, kind, key, n)
    SELECT env, 'user', user_id, count(*) FROM error_logs GROUP BY env, user_id;
INSERT INTO error_log_tallies (env, kind, key, n)
    SELECT env, 'workflow', workflow_id, count(*) FROM error_logs GROUP BY env, workflow_id;
CREATE TRIGGER error_log_tallied AFTER INSERT ON error_logs BEGIN
    INSERT INTO error_log_tallies (env, kind, key, n) VALUES (NEW.env, 'user', NEW.user_id, 1)
        ON CONFLICT (env, kind, key) DO UPDATE SET n = n + 1;
    INSERT INTO error_log_tallies (env, kind, key, n) VALUES (NEW.env, 'workflow', NEW.workflow_id, 1)
        ON CONFLICT (env, kind, key) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER error_log_untallied AFTER DELETE ON error_logs BEGIN
    UPDATE error_log_tallies SET n = n - 1 WHERE env = OLD.env AND kind = 'user' AND key = OLD.user_id;
    UPDATE error_log_tallies SET n = n - 1 WHERE env = OLD.env AND kind = 'workflow' AND key = OLD.workflow_id;
    DELETE FROM error_log_tallies WHERE env = OLD.env AND kind = 'user' AND key = OLD.user_id AND n <= 0;
    DELETE FROM error_log_tallies WHERE env = OLD.env AND kind = 'workflow' AND key = OLD.workflow_id AND n <= 0;
END;

-- migration 6: a page of one user's or one workflow's logs, read from one place. A server writes
-- logs in time order, so a user's logs lie among everyone else's, one table page each: at ten
-- million logs, a page by user read ten pages from all over the file. These two indexes hold
-- every column of a log after the columns they are searched and ordered by, so such a page is
-- read from consecutive index entries and never from the table. The cost: each log is stored
-- three times, and written three times.
DROP INDEX error_logs_user;
DROP INDEX error_logs_workflow;
CREATE INDEX error_logs_user ON error_logs (env, user_id, created_at, id,
    workflow_id, execution_id, block_id, block_type, block_name, error, updated_at);
CREATE INDEX error_logs_workflow ON error_logs (env, workflow_id, created_at, id,
    user_id, execution_id, block_id, block_type, block_name, error, updated_at);
