CREATE TABLE registry_entries (
    unit_id TEXT NOT NULL REFERENCES units(id),
    line BIGINT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    ip TEXT,
    mac TEXT,
    user_name TEXT,
    location TEXT,
    machine_room BIGINT NOT NULL,
    url TEXT,
    PRIMARY KEY (unit_id, line)
);
