CREATE TABLE units (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    parent TEXT REFERENCES units(id),
    kind TEXT NOT NULL,
    maintainer TEXT,
    responder TEXT,
    enrolled TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE enrol_tokens (
    secret_hash TEXT PRIMARY KEY,
    unit_id TEXT NOT NULL REFERENCES units(id),
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    unit_id TEXT NOT NULL REFERENCES units(id),
    credential_hash TEXT NOT NULL UNIQUE,
    hostname TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_seen BIGINT
);
CREATE TABLE reports (
    report_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    unit_id TEXT NOT NULL REFERENCES units(id),
    sequence BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX reports_unit_created ON reports (unit_id, created_at);
