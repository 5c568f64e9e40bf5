//! The HTTP interface: `POST /alerts` (the webhook), the cards at
//! `GET /incidents` and `GET /incidents/{id}` (HTML, or JSON / Markdown by
//! `Accept` or `?format=`), `POST /incidents/{id}/actions`,
//! `POST /changes` and `GET /changes` (what deploy tools announce),
//! `/metrics`, `/health`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::render;
use crate::webhook::Notification;
use crate::{Retro, StoreError, Tokens, auth};

/// The largest webhook body taken (Alertmanager's default groups stay far
/// below it).
pub const MAX_WEBHOOK_BYTES: usize = 1 << 20;

/// How many cards `GET /incidents` lists without `?limit=`.
pub const DEFAULT_LIST_LIMIT: u32 = 100;

/// The most cards one `GET /incidents` lists.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// The longest action text.
pub const MAX_ACTION_CHARS: usize = 2000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Html,
    Json,
    Markdown,
}

#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

#[derive(Deserialize)]
struct ListQuery {
    format: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

fn format(headers: &HeaderMap, q: &FormatQuery) -> Result<Format, Box<Response>> {
    match q.format.as_deref() {
        Some("json") => return Ok(Format::Json),
        Some("md" | "markdown") => return Ok(Format::Markdown),
        Some("html") => return Ok(Format::Html),
        Some(other) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("unknown format {other:?}: json, md or html"),
            )));
        }
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(if accept.contains("application/json") {
        Format::Json
    } else if accept.contains("text/markdown") {
        Format::Markdown
    } else {
        Format::Html
    })
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// A store failure as an answer: 503 (with `Retry-After`) while the store
/// cannot be reached — Alertmanager retries, nothing is lost — and 500 for
/// a stored card that cannot be read.
fn store_error(e: &StoreError) -> Response {
    match e {
        StoreError::Corrupt { .. } => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        _ => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            r
        }
    }
}

async fn alerts(State(retro): State<Retro>, body: Bytes) -> Response {
    match Notification::from_json(&body) {
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(n) => match retro.receive(n).await {
            Ok(ids) => axum::Json(serde_json::json!({ "incidents": ids })).into_response(),
            Err(e) => store_error(&e),
        },
    }
}

async fn list(
    State(retro): State<Retro>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let limit = q
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    let offset = q.offset.unwrap_or(0);
    let cards = match retro.incidents(limit, offset).await {
        Ok(cards) => cards,
        Err(e) => return store_error(&e),
    };
    // A full page may have older cards after it (in the same format).
    let older = (cards.len() == limit as usize).then(|| {
        let format = match q.format.as_deref() {
            Some(f @ ("json" | "md" | "markdown" | "html")) => format!("&format={f}"),
            _ => String::new(),
        };
        format!(
            "/incidents?limit={limit}&offset={}{format}",
            offset.saturating_add(limit)
        )
    });
    let mut response = match format(&headers, &FormatQuery { format: q.format }) {
        Err(r) => return *r,
        Ok(Format::Json) => axum::Json(&cards).into_response(),
        Ok(Format::Markdown) => {
            let md: String = cards
                .iter()
                .map(|c| {
                    format!(
                        "- [{}](/incidents/{}) — {}\n",
                        c.alert.name(),
                        c.id,
                        render::summary(c)
                    )
                })
                .collect();
            ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], md).into_response()
        }
        Ok(Format::Html) => {
            axum::response::Html(render::html_list(&cards, older.as_deref())).into_response()
        }
    };
    if let Some(link) =
        older.and_then(|l| header::HeaderValue::try_from(format!("<{l}>; rel=\"next\"")).ok())
    {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

async fn show(
    State(retro): State<Retro>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<FormatQuery>,
) -> Response {
    let card = match retro.incident(&id).await {
        Ok(Some(card)) => card,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no incident {id:?}")),
        Err(e) => return store_error(&e),
    };
    match format(&headers, &q) {
        Err(r) => *r,
        Ok(Format::Json) => axum::Json(&card).into_response(),
        Ok(Format::Markdown) => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            render::markdown(&card),
        )
            .into_response(),
        Ok(Format::Html) => axum::response::Html(render::html(&card)).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAction {
    text: String,
    #[serde(default)]
    link: Option<String>,
}

async fn add_action(State(retro): State<Retro>, Path(id): Path<String>, body: Bytes) -> Response {
    let action: NewAction = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"text\": \"…\", \"link\": \"https://…\"}}: {e}"),
            );
        }
    };
    let text = action.text.trim();
    if text.is_empty() || text.chars().count() > MAX_ACTION_CHARS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("text: 1 to {MAX_ACTION_CHARS} characters"),
        );
    }
    if let Some(l) = &action.link
        && !(l.starts_with("https://") || l.starts_with("http://"))
    {
        return error(StatusCode::BAD_REQUEST, "link: an http(s) URL".to_owned());
    }
    match retro.add_action(&id, text.to_owned(), action.link).await {
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no incident {id:?}")),
        Ok(Some(card)) => (StatusCode::CREATED, axum::Json(card)).into_response(),
        Err(e) => store_error(&e),
    }
}

/// The longest text of an announced change's field.
pub const MAX_CHANGE_FIELD_CHARS: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewChange {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    what: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    link: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    at: Option<time::OffsetDateTime>,
}

/// `POST /changes`: `{"service": "order-service", "version": "0.1.1",
/// "link": "https://…", "kind": "deploy", "what": "…", "at": RFC 3339}`,
/// every field optional but one of `version` and `what`; `service` is the
/// spec's by default, `kind` `deploy`, `at` now.
async fn add_change(State(retro): State<Retro>, body: Bytes) -> Response {
    let c: NewChange = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"service\", \"version\", \"link\", \"kind\", \"what\", \"at\"}}: {e}"
                ),
            );
        }
    };
    let field = |name: &str, v: &Option<String>| -> Result<Option<String>, String> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(t) if t.chars().count() > MAX_CHANGE_FIELD_CHARS => Err(format!(
                "{name}: at most {MAX_CHANGE_FIELD_CHARS} characters"
            )),
            Some(t) => Ok(Some(t.to_owned())),
        }
    };
    let parsed = (|| {
        Ok::<_, String>((
            field("service", &c.service)?,
            field("kind", &c.kind)?,
            field("what", &c.what)?,
            field("version", &c.version)?,
            field("link", &c.link)?,
        ))
    })();
    let (service, kind, what, version, link) = match parsed {
        Ok(p) => p,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    if let Some(l) = &link
        && !(l.starts_with("https://") || l.starts_with("http://"))
    {
        return error(StatusCode::BAD_REQUEST, "link: an http(s) URL".to_owned());
    }
    let service = service.unwrap_or_else(|| retro.spec.service.clone());
    let what = match (what, &version) {
        (Some(w), _) => w,
        (None, Some(v)) => format!("{service} {v} deployed"),
        (None, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "a change needs a version or a what".to_owned(),
            );
        }
    };
    let change = crate::incident::Change {
        at: c.at.unwrap_or_else(time::OffsetDateTime::now_utc),
        kind: kind.unwrap_or_else(|| "deploy".to_owned()),
        what,
        version,
        link,
        source: crate::incident::ChangeSource::Announced,
    };
    match retro.store.add_change(&service, &change).await {
        Ok(()) => (StatusCode::CREATED, axum::Json(change)).into_response(),
        Err(e) => store_error(&retro.store_failed("write", e)),
    }
}

#[derive(Deserialize)]
struct ChangesQuery {
    service: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    since: Option<time::OffsetDateTime>,
}

/// `GET /changes?service=…&since=RFC3339`: the announced changes, oldest
/// first (the last day by default).
async fn list_changes(State(retro): State<Retro>, Query(q): Query<ChangesQuery>) -> Response {
    let now = time::OffsetDateTime::now_utc();
    let service = q.service.unwrap_or_else(|| retro.spec.service.clone());
    let since = q.since.unwrap_or(now - time::Duration::days(1));
    match retro
        .store
        .changes(&service, since, now, MAX_LIST_LIMIT)
        .await
    {
        Ok(changes) => axum::Json(changes).into_response(),
        Err(e) => store_error(&retro.store_failed("read", e)),
    }
}

fn guarded(router: Router<Retro>, token: Option<&crate::Token>) -> Router<Retro> {
    router.route_layer(axum::middleware::from_fn_with_state(
        token.cloned().map(Arc::new),
        auth::require,
    ))
}

impl Retro {
    /// The service's routes (without telemetry: the binary adds looptel's
    /// server layer, as any service would). Tokens are checked before a
    /// body is read.
    pub fn router(&self) -> Router {
        let Tokens {
            webhook,
            write,
            read,
        } = &self.tokens;
        let webhook = guarded(
            Router::new().route(
                "/alerts",
                post(alerts).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES)),
            ),
            webhook.as_ref(),
        );
        let writes = guarded(
            Router::new()
                .route(
                    "/incidents/{id}/actions",
                    post(add_action).layer(DefaultBodyLimit::max(64 << 10)),
                )
                .route(
                    "/changes",
                    post(add_change).layer(DefaultBodyLimit::max(64 << 10)),
                ),
            write.as_ref(),
        );
        let reads = guarded(
            Router::new()
                .route("/incidents", get(list))
                .route("/incidents/{id}", get(show))
                .route("/changes", get(list_changes))
                .route(
                    "/metrics",
                    looptel_red_metrics::metrics_endpoint(self.registry().clone()),
                ),
            read.as_ref(),
        );
        webhook
            .merge(writes)
            .merge(reads)
            .route("/health", get(|| async { "ok" }))
            .with_state(self.clone())
    }
}
