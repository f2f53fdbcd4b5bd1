CREATE TABLE rollups (
    unit_id TEXT NOT NULL REFERENCES units(id),
    day TEXT NOT NULL,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    reports BIGINT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (unit_id, day, agent_id)
);
CREATE TABLE rollup_months (
    unit_id TEXT NOT NULL REFERENCES units(id),
    month TEXT NOT NULL,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    reports BIGINT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (unit_id, month, agent_id)
);
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    unit_id TEXT REFERENCES units(id),
    display_name TEXT,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE manual_entries (
    id TEXT PRIMARY KEY,
    unit_id TEXT NOT NULL REFERENCES units(id),
    period TEXT NOT NULL,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    score DOUBLE PRECISION,
    reviewer TEXT NOT NULL,
    note TEXT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    withdrawn_at BIGINT
);
CREATE INDEX manual_entries_unit ON manual_entries (unit_id, period);
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    unit_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
ALTER TABLE enrol_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'agent';
ALTER TABLE agents ADD COLUMN kind TEXT NOT NULL DEFAULT 'agent';
CREATE TABLE alerts (
    unit_id TEXT NOT NULL REFERENCES units(id),
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    detail TEXT NOT NULL,
    notified_at BIGINT,
    PRIMARY KEY (unit_id, key)
);
