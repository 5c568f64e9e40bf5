-- One row per incident card (one per alert fingerprint and start time).
-- The same text runs on SQLite and PostgreSQL.
CREATE TABLE incidents (
    -- `{fingerprint}-{startsAt, Unix seconds}`: what a retry or the other
    -- replica's delivery shares with the first one.
    id TEXT PRIMARY KEY,
    -- When the first delivery was stored, Unix milliseconds: the list's
    -- order and what retention counts from.
    received_ms BIGINT NOT NULL,
    -- Unix milliseconds of the last write.
    updated_ms BIGINT NOT NULL,
    -- Bumped by every write: an update applies only to the version it read.
    version BIGINT NOT NULL,
    -- `firing`, `resolved`, `verified`, `not_verified` (the card's state).
    state TEXT NOT NULL,
    -- 1 once the evidence is on the card.
    gathered INTEGER NOT NULL,
    -- The replica gathering the evidence, and until when its claim holds
    -- (Unix milliseconds); NULL: nobody.
    gather_owner TEXT,
    gather_until_ms BIGINT,
    -- The replica checking the recovery, and until when.
    verify_owner TEXT,
    verify_until_ms BIGINT,
    -- The card itself, as JSON.
    card TEXT NOT NULL
);

CREATE INDEX incidents_received ON incidents (received_ms);
CREATE INDEX incidents_work ON incidents (gathered, state);
