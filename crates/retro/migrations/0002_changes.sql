-- What a deploy tool (or a person) says it changed: one row per
-- announcement, read back for the cards whose burn it precedes.
-- The same text runs on SQLite and PostgreSQL.
CREATE TABLE changes (
    -- The service it changed (`service.name`).
    service TEXT NOT NULL,
    -- When, Unix milliseconds.
    at_ms BIGINT NOT NULL,
    -- When it was received, Unix milliseconds.
    received_ms BIGINT NOT NULL,
    -- `deploy`, `config`, `feature_flag`, … as the poster says.
    kind TEXT NOT NULL,
    -- In a few words (`order-service 0.1.1`).
    what TEXT NOT NULL,
    -- The version deployed, if any.
    version TEXT,
    -- The pull request, pipeline run or release page.
    link TEXT
);

CREATE INDEX changes_service_at ON changes (service, at_ms);
