-- Gandalf's tables (organizations, teams, providers, api_keys with role, routes, usage_records,
-- usage_rollups) with its names, fixed: no provider secret column, UNIQUE request ids for
-- idempotent usage inserts, a CHECK on roles, and a configuration version that triggers bump in
-- the same transaction as any change to providers, routes or keys.
-- Timestamps are RFC3339 UTC text with milliseconds and `Z`; JSON columns are text.

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    allowed_models TEXT,
    rpm_limit INTEGER,
    tpm_limit INTEGER,
    max_budget REAL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO organizations (id, name) VALUES ('default', 'Default Organization');

CREATE TABLE teams (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    allowed_models TEXT,
    rpm_limit INTEGER,
    tpm_limit INTEGER,
    max_budget REAL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX idx_teams_org ON teams(org_id);

CREATE TABLE providers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    base_url TEXT NOT NULL DEFAULT '',
    models TEXT NOT NULL DEFAULT '[]',
    priority INTEGER NOT NULL DEFAULT 0,
    weight INTEGER NOT NULL DEFAULT 1,
    enabled INTEGER NOT NULL DEFAULT 1,
    max_rps INTEGER NOT NULL DEFAULT 0,
    timeout_ms INTEGER NOT NULL DEFAULT 120000,
    hosting TEXT NOT NULL DEFAULT '',
    region TEXT NOT NULL DEFAULT '',
    project TEXT NOT NULL DEFAULT '',
    api_version TEXT NOT NULL DEFAULT '',
    api_key_env TEXT NOT NULL DEFAULT '',  -- the NAME of an environment variable, not a secret
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_providers_priority ON providers(priority, id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    user_id TEXT,
    team_id TEXT REFERENCES teams(id) ON DELETE SET NULL,
    org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    role TEXT NOT NULL DEFAULT 'member'
        CHECK (role IN ('admin', 'member', 'viewer', 'service_account')),
    allowed_models TEXT,
    rpm_limit INTEGER,
    tpm_limit INTEGER,
    max_budget REAL,
    budget_period TEXT NOT NULL DEFAULT 'monthly',
    expires_at TEXT,
    blocked INTEGER NOT NULL DEFAULT 0,
    last_used_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_api_keys_org ON api_keys(org_id, created_at);
CREATE INDEX idx_api_keys_team ON api_keys(team_id);

CREATE TABLE routes (
    id TEXT PRIMARY KEY,
    model_alias TEXT NOT NULL UNIQUE,
    targets TEXT NOT NULL,
    strategy TEXT NOT NULL DEFAULT 'priority',
    cache_ttl_s INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE usage_records (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    key_id TEXT NOT NULL,
    user_id TEXT NOT NULL DEFAULT '',
    team_id TEXT NOT NULL DEFAULT '',
    org_id TEXT NOT NULL,
    model TEXT NOT NULL,
    upstream_model TEXT NOT NULL DEFAULT '',
    provider_id TEXT NOT NULL DEFAULT '',
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    cached INTEGER NOT NULL DEFAULT 0,
    latency_ms INTEGER NOT NULL DEFAULT 0,
    ttft_ms INTEGER,
    status_code INTEGER NOT NULL,
    usage_source TEXT NOT NULL DEFAULT 'provider'
        CHECK (usage_source IN ('provider', 'estimated')),
    created_at TEXT NOT NULL
);
CREATE INDEX idx_usage_key_time ON usage_records(key_id, created_at);
CREATE INDEX idx_usage_org_time ON usage_records(org_id, created_at);
CREATE INDEX idx_usage_time ON usage_records(created_at);

CREATE TABLE usage_rollups (
    org_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    period TEXT NOT NULL CHECK (period IN ('hourly', 'daily')),
    bucket TEXT NOT NULL,
    request_count INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    cached_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, key_id, model, period, bucket)
);
CREATE INDEX idx_rollups_org_bucket ON usage_rollups(org_id, bucket);
CREATE INDEX idx_rollups_key_bucket ON usage_rollups(key_id, bucket);

-- One row; the control plane publishes `version` with every snapshot it sends the data plane.
CREATE TABLE config_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 1);

-- Triggers rather than calls in each store function: no write path can forget the bump, and
-- it commits or rolls back with the change itself. `last_used_at` is not configuration, so
-- refreshing it does not bump (it would republish every key on every cache miss).
CREATE TRIGGER providers_insert_bump AFTER INSERT ON providers
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER providers_update_bump AFTER UPDATE ON providers
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER providers_delete_bump AFTER DELETE ON providers
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER routes_insert_bump AFTER INSERT ON routes
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER routes_update_bump AFTER UPDATE ON routes
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER routes_delete_bump AFTER DELETE ON routes
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER api_keys_insert_bump AFTER INSERT ON api_keys
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER api_keys_update_bump AFTER UPDATE OF
    key_hash, key_prefix, name, user_id, team_id, org_id, role, allowed_models, rpm_limit,
    tpm_limit, max_budget, budget_period, expires_at, blocked
ON api_keys
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER api_keys_delete_bump AFTER DELETE ON api_keys
BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
