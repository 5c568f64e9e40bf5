//! Where the cards live: SQLite in a file (embedded, the default: nothing
//! to install) or PostgreSQL (several replicas on one database).
//!
//! A card is written before the webhook that made it is acknowledged, in
//! one statement, so it is either all there or not there at all. Each row
//! holds the card as JSON beside the few columns the service asks about
//! (state, whether the evidence is in, who is working on it); every write
//! applies only to the version it read, so two replicas never undo each
//! other's writes.
//!
//! Work on a card — gathering its evidence, checking its recovery — is
//! *claimed* in the row before it starts, for a bounded time: the same
//! notification delivered to two replicas makes one card and one
//! gathering, and work whose replica stopped (a deploy, a crash) is taken
//! up again once its claim lapses, or at once when the replica gave it
//! back at a clean shutdown.
//!
//! # Why sqlx
//!
//! One schema and one set of queries for both databases: sqlx's `Any`
//! driver runs the same SQL text on SQLite (bundled, so a fresh machine
//! needs nothing) and PostgreSQL, with pooled async connections, and its
//! migrator records applied versions with checksums (and takes
//! PostgreSQL's advisory lock, so two replicas starting together migrate
//! once). rusqlite plus tokio-postgres would have meant two drivers, two
//! sets of queries and a hand-written migration table. sqlx 0.8 rather
//! than 0.9 because 0.9 requires Rust 1.94 and the workspace's MSRV is
//! 1.88.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{
    Migrate as _, MigrateError, Migration, MigrationSource, MigrationType, Migrator,
};
use sqlx::{AnyConnection, AnyPool, Connection as _, Executor as _, Row as _};
use std::future::Future;
use std::pin::Pin;

use crate::incident::{Change, Incident, State};

/// The schema's migrations, oldest first: `(version, description, SQL)`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "incidents",
        include_str!("../migrations/0001_incidents.sql"),
    ),
    (2, "changes", include_str!("../migrations/0002_changes.sql")),
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Where a store in memory is, for a person.
const MEMORY: &str = "memory";

/// How many times a write is tried against concurrent writers before it
/// gives up.
const WRITE_ATTEMPTS: usize = 16;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no database this service can use.
    #[error(
        "{0:?} is not a database URL: sqlite://FILE (sqlite::memory: in tests) or postgres://USER@HOST/DB"
    )]
    Url(String),
    /// The database could not be opened or reached.
    #[error("cannot open the store at {location}: {message}")]
    Open {
        /// Where (a file, or the PostgreSQL server without its password).
        location: String,
        /// Why.
        message: String,
    },
    /// The database's schema is newer than this build knows: refused, never
    /// downgraded.
    #[error(
        "the store at {location} has schema version {found}, newer than this looptel-retro knows ({known}): refusing to start; run a release that knows it"
    )]
    NewerSchema {
        /// Where.
        location: String,
        /// The newest version applied to the database.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// Applying the schema failed.
    #[error("migrating the store at {location}: {message}")]
    Migrate {
        /// Where.
        location: String,
        /// Why.
        message: String,
    },
    /// A read or write failed (the database is down, full, or locked for
    /// too long).
    #[error("the store failed: {0}")]
    Unavailable(String),
    /// A write kept meeting concurrent writers.
    #[error("card {0}: too many concurrent writes")]
    Contended(String),
    /// A stored card cannot be read back.
    #[error("card {id} in the store cannot be read: {message}")]
    Corrupt {
        /// The card.
        id: String,
        /// Why.
        message: String,
    },
}

impl StoreError {
    fn unavailable(e: sqlx::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// Which database a store is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite, in a file (WAL mode) or in memory.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The cards, in SQLite or PostgreSQL. Cheap to clone (one pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    location: String,
}

/// Work on a card that one replica at a time does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Work {
    /// Gathering the evidence of a firing alert.
    Gather,
    /// Checking the recovery of a resolved one.
    Verify,
}

impl Work {
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            // (owner, until, the condition under which the work is due)
            Self::Gather => ("gather_owner", "gather_until_ms", "gathered = 0"),
            Self::Verify => ("verify_owner", "verify_until_ms", "state = 'resolved'"),
        }
    }
}

/// What [`Store::update`] did.
#[derive(Debug)]
pub(crate) enum Updated<T> {
    /// No such card.
    Missing,
    /// The closure left the card as it was.
    Unchanged,
    /// Written: the closure's answer and the card as stored.
    Done(T, Box<Incident>),
}

#[derive(Debug)]
struct Migrations;

impl<'s> MigrationSource<'s> for Migrations {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 's>>
    {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

fn state_word(s: State) -> &'static str {
    match s {
        State::Firing => "firing",
        State::Resolved => "resolved",
        State::Verified => "verified",
        State::NotVerified => "not_verified",
    }
}

/// Unix milliseconds.
/// Unix milliseconds of `t`.
fn ms_of(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// `postgres://user:secret@host/db` without the secret.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let path = path.split('?').next().unwrap_or("");
    format!("{scheme}://{authority}/{path}")
}

/// Sets up each new connection. SQLite: WAL (readers never wait for the
/// writer), a write waits up to 5 s for another's lock instead of failing
/// at once, and FULL sync (a card acknowledged is on disk).
async fn prepare(conn: &mut AnyConnection, sqlite: bool) -> Result<(), sqlx::Error> {
    if sqlite {
        conn.execute("PRAGMA journal_mode = WAL").await?;
        conn.execute("PRAGMA busy_timeout = 5000").await?;
        conn.execute("PRAGMA synchronous = FULL").await?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating it if need be) the store at `url` and brings its
    /// schema up to date:
    ///
    /// - `sqlite://retro.db` (relative to the working directory),
    ///   `sqlite:///var/lib/retro/retro.db`, or `sqlite::memory:` (one
    ///   connection, gone at exit: for tests);
    /// - `postgres://user@host:5432/db` (any libpq-style URL sqlx reads).
    ///
    /// # Errors
    /// [`StoreError::Url`] for another scheme; [`StoreError::Open`] when
    /// the file cannot be created or is not a database, or the server
    /// refuses; [`StoreError::NewerSchema`] when a newer release migrated
    /// the database; [`StoreError::Migrate`] when the schema cannot be
    /// applied.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url, location, connections) = if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if path.is_empty() {
                return Err(StoreError::Url(url.to_owned()));
            }
            if path == ":memory:" {
                (
                    Backend::Sqlite,
                    "sqlite::memory:".to_owned(),
                    MEMORY.to_owned(),
                    1,
                )
            } else {
                let location = std::path::absolute(PathBuf::from(path))
                    .map_or_else(|_| path.to_owned(), |p| p.display().to_string());
                // Created when missing, unless the URL says otherwise.
                let query = if query.split('&').any(|kv| kv.starts_with("mode=")) {
                    query.to_owned()
                } else if query.is_empty() {
                    "mode=rwc".to_owned()
                } else {
                    format!("{query}&mode=rwc")
                };
                (
                    Backend::Sqlite,
                    format!("sqlite://{path}?{query}"),
                    location,
                    4,
                )
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned(), redact(url), 8)
        } else {
            return Err(StoreError::Url(url.to_owned()));
        };
        let open_error = |e: &dyn std::fmt::Display| StoreError::Open {
            location: location.clone(),
            message: e.to_string(),
        };
        let sqlite = backend == Backend::Sqlite;
        // One connection first: the pool would retry a failing one until
        // its timeout and report only that, not why.
        let mut first = AnyConnection::connect(&url)
            .await
            .map_err(|e| open_error(&e))?;
        prepare(&mut first, sqlite)
            .await
            .map_err(|e| open_error(&e))?;
        let _ = first.close().await;
        let mut options = AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(5));
        if location == MEMORY {
            // The database is its one connection: never let it go idle.
            options = options
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = options
            .after_connect(move |conn, _| Box::pin(prepare(conn, sqlite)))
            .connect(&url)
            .await
            .map_err(|e| open_error(&e))?;
        let store = Self {
            pool,
            backend,
            location,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = Migrator::new(Migrations)
            .await
            .map_err(|e| StoreError::Migrate {
                location: self.location.clone(),
                message: e.to_string(),
            })?;
        match migrator.run(&self.pool).await {
            Ok(()) => Ok(()),
            Err(MigrateError::VersionMissing(_)) => {
                // Applied by a newer release: name the newest version.
                let found = match self.pool.acquire().await {
                    Ok(mut conn) => conn
                        .list_applied_migrations()
                        .await
                        .ok()
                        .and_then(|m| m.iter().map(|m| m.version).max()),
                    Err(_) => None,
                };
                Err(StoreError::NewerSchema {
                    location: self.location.clone(),
                    found: found.unwrap_or(SCHEMA_VERSION + 1),
                    known: SCHEMA_VERSION,
                })
            }
            Err(MigrateError::Execute(e)) => Err(StoreError::Open {
                location: self.location.clone(),
                message: e.to_string(),
            }),
            Err(e) => Err(StoreError::Migrate {
                location: self.location.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where it is, for a person: the file's absolute path, or the
    /// PostgreSQL URL without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Closes the pool: in-flight statements finish, new ones fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// How many cards there are.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot answer.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM incidents")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        let n: i64 = row.try_get("n").map_err(StoreError::unavailable)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn card_of(row: &AnyRow) -> Result<Incident, StoreError> {
        let id: String = row.try_get("id").map_err(StoreError::unavailable)?;
        let text: String = row.try_get("card").map_err(StoreError::unavailable)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            id,
            message: e.to_string(),
        })
    }

    /// A card as its row keeps it.
    fn json_of(card: &Incident) -> Result<String, StoreError> {
        serde_json::to_string(card).map_err(|e| StoreError::Corrupt {
            id: card.id.clone(),
            message: e.to_string(),
        })
    }

    /// Stores a new card, with `claims` (work this replica takes on at
    /// once, until the given Unix milliseconds) — unless a card with its
    /// id exists: `false` then, and nothing is written.
    pub(crate) async fn insert(
        &self,
        card: &Incident,
        owner: &str,
        claims: &[(Work, i64)],
    ) -> Result<bool, StoreError> {
        let text = Self::json_of(card)?;
        let claim = |w: Work| claims.iter().find(|c| c.0 == w).map(|c| c.1);
        let (gather, verify) = (claim(Work::Gather), claim(Work::Verify));
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO incidents (id, received_ms, updated_ms, version, state, gathered, \
             gather_owner, gather_until_ms, verify_owner, verify_until_ms, card) \
             VALUES ($1, $2, $2, 0, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&card.id)
        .bind(now)
        .bind(state_word(card.state))
        .bind(i32::from(card.evidence.is_some()))
        .bind(gather.map(|_| owner))
        .bind(gather)
        .bind(verify.map(|_| owner))
        .bind(verify)
        .bind(text)
        .execute(&self.pool)
        .await
        .map_err(StoreError::unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    /// A card.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`], or [`StoreError::Corrupt`] for a row
    /// that is not a card.
    pub async fn get(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        Ok(self.get_versioned(id).await?.map(|(card, _)| card))
    }

    async fn get_versioned(&self, id: &str) -> Result<Option<(Incident, i64)>, StoreError> {
        let row = sqlx::query("SELECT id, version, card FROM incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let version: i64 = row.try_get("version").map_err(StoreError::unavailable)?;
        Ok(Some((Self::card_of(&row)?, version)))
    }

    /// The newest `limit` cards, newest first, skipping `offset`.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub async fn list(&self, limit: u32, offset: u32) -> Result<Vec<Incident>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, card FROM incidents ORDER BY received_ms DESC, id DESC LIMIT $1 OFFSET $2",
        )
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::unavailable)?;
        rows.iter().map(Self::card_of).collect()
    }

    /// Reads a card, lets `f` change it, and writes it back if nothing
    /// else wrote it meanwhile (otherwise reads it again and retries).
    /// `f` returns `None` to leave the card as it is.
    pub(crate) async fn update<T>(
        &self,
        id: &str,
        mut f: impl FnMut(&mut Incident) -> Option<T>,
    ) -> Result<Updated<T>, StoreError> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some((mut card, version)) = self.get_versioned(id).await? else {
                return Ok(Updated::Missing);
            };
            let Some(out) = f(&mut card) else {
                return Ok(Updated::Unchanged);
            };
            let text = Self::json_of(&card)?;
            let done = sqlx::query(
                // Work that is done holds no claim any more.
                "UPDATE incidents SET card = $1, state = $2, gathered = $3, updated_ms = $4, \
                 version = version + 1, \
                 gather_owner = CASE WHEN $3 = 1 THEN NULL ELSE gather_owner END, \
                 gather_until_ms = CASE WHEN $3 = 1 THEN NULL ELSE gather_until_ms END, \
                 verify_owner = CASE WHEN $2 = 'resolved' THEN verify_owner ELSE NULL END, \
                 verify_until_ms = CASE WHEN $2 = 'resolved' THEN verify_until_ms ELSE NULL END \
                 WHERE id = $5 AND version = $6",
            )
            .bind(text)
            .bind(state_word(card.state))
            .bind(i32::from(card.evidence.is_some()))
            .bind(now_ms())
            .bind(id)
            .bind(version)
            .execute(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
            if done.rows_affected() == 1 {
                return Ok(Updated::Done(out, Box::new(card)));
            }
        }
        Err(StoreError::Contended(id.to_owned()))
    }

    /// Keeps a change announced by a deploy tool or a person.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot take it.
    pub async fn add_change(&self, service: &str, change: &Change) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO changes (service, at_ms, received_ms, kind, what, version, link) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(service)
        .bind(ms_of(change.at))
        .bind(now_ms())
        .bind(&change.kind)
        .bind(&change.what)
        .bind(change.version.as_deref())
        .bind(change.link.as_deref())
        .execute(&self.pool)
        .await
        .map_err(StoreError::unavailable)?;
        Ok(())
    }

    /// The changes announced for `service` between `from` and `to`
    /// (inclusive), oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn changes(
        &self,
        service: &str,
        from: time::OffsetDateTime,
        to: time::OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(
            "SELECT at_ms, kind, what, version, link FROM changes \
             WHERE service = $1 AND at_ms >= $2 AND at_ms <= $3 \
             ORDER BY at_ms, received_ms LIMIT $4",
        )
        .bind(service)
        .bind(ms_of(from))
        .bind(ms_of(to))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::unavailable)?;
        rows.iter()
            .map(|row| {
                let at: i64 = row.try_get("at_ms").map_err(StoreError::unavailable)?;
                Ok(Change {
                    at: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
                        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                    kind: row.try_get("kind").map_err(StoreError::unavailable)?,
                    what: row.try_get("what").map_err(StoreError::unavailable)?,
                    version: row.try_get("version").map_err(StoreError::unavailable)?,
                    link: row.try_get("link").map_err(StoreError::unavailable)?,
                    source: crate::incident::ChangeSource::Announced,
                })
            })
            .collect()
    }

    /// Claims `work` on a card for `owner` until `until_ms`: `true` if it
    /// is due and nobody else holds an unexpired claim (a claim `owner`
    /// already holds is extended).
    pub(crate) async fn claim(
        &self,
        id: &str,
        work: Work,
        owner: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let (who, until, due) = work.columns();
        let sql = format!(
            "UPDATE incidents SET {who} = $1, {until} = $2 WHERE id = $3 AND {due} \
             AND ({who} IS NULL OR {who} = $1 OR {until} < $4)"
        );
        let done = sqlx::query(&sql)
            .bind(owner)
            .bind(until_ms)
            .bind(id)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives back every claim `owner` holds (a clean shutdown: another
    /// replica, or this one restarted, takes the work up at once).
    pub(crate) async fn release_all(&self, owner: &str) -> Result<u64, StoreError> {
        let mut released = 0;
        for work in [Work::Gather, Work::Verify] {
            let (who, until, _) = work.columns();
            let sql = format!("UPDATE incidents SET {who} = NULL, {until} = NULL WHERE {who} = $1");
            released += sqlx::query(&sql)
                .bind(owner)
                .execute(&self.pool)
                .await
                .map_err(StoreError::unavailable)?
                .rows_affected();
        }
        Ok(released)
    }

    /// Cards with `work` due that nobody holds (or whose claim lapsed),
    /// oldest first, at most `limit`.
    pub(crate) async fn due(&self, work: Work, limit: u32) -> Result<Vec<Incident>, StoreError> {
        let (who, until, due) = work.columns();
        let sql = format!(
            "SELECT id, card FROM incidents WHERE {due} AND ({who} IS NULL OR {until} < $1) \
             ORDER BY received_ms LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(now_ms())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::unavailable)?;
        rows.iter().map(Self::card_of).collect()
    }

    /// Deletes the announced changes made before `cutoff_ms`; how many.
    pub(crate) async fn delete_changes_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM changes WHERE at_ms < $1")
            .bind(cutoff_ms)
            .execute(&self.pool)
            .await
            .map_err(StoreError::unavailable)?
            .rows_affected())
    }

    /// Deletes the cards first received before `cutoff_ms`; how many.
    pub(crate) async fn delete_received_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM incidents WHERE received_ms < $1")
            .bind(cutoff_ms)
            .execute(&self.pool)
            .await
            .map_err(StoreError::unavailable)?
            .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_is_shown_without_its_password() {
        assert_eq!(
            redact("postgres://retro:s3cret@db.internal:5432/retro?sslmode=require"),
            "postgres://retro@db.internal:5432/retro"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
    }
}
