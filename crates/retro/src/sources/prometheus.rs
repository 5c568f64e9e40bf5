//! Prometheus' HTTP API: `/api/v1/query_exemplars`, `/api/v1/query`,
//! `/api/v1/query_range`. Tested against Debian's Prometheus.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::sources::{Exemplar, Http, MetricsSource, Series, SourceError, SourceFuture, unix};

/// The most an answer may weigh.
pub const MAX_BODY_BYTES: usize = 32 << 20;

/// A Prometheus server.
#[derive(Clone, Debug)]
pub struct Prometheus {
    base: String,
    http: Http,
}

impl Prometheus {
    /// Prometheus at `base` (`http://127.0.0.1:9090`).
    pub fn new(base: impl Into<String>, http: Http) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            http,
        }
    }

    async fn api(&self, path: &str, query: &[(&str, String)]) -> Result<Value, SourceError> {
        let name = self.name();
        let url = format!("{}{path}", self.base);
        let body = self
            .http
            .get(&name, &url, query, MAX_BODY_BYTES)
            .await?
            .ok_or_else(|| SourceError::new(&name, format!("{url} answered 404")))?;
        parse_answer(&name, &body)
    }
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    error: String,
}

fn parse_answer(source: &str, body: &[u8]) -> Result<Value, SourceError> {
    let a: Answer = serde_json::from_slice(body)
        .map_err(|e| SourceError::new(source, format!("unreadable answer: {e}")))?;
    if a.status != "success" {
        return Err(SourceError::new(
            source,
            format!("query failed: {}", a.error),
        ));
    }
    Ok(a.data)
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A `[timestamp, "value"]` pair; `None` for NaN, infinities or junk.
fn point(v: &Value) -> Option<(f64, f64)> {
    let t = v.get(0)?.as_f64()?;
    let x: f64 = v.get(1)?.as_str()?.parse().ok()?;
    x.is_finite().then_some((t, x))
}

pub(crate) fn parse_exemplars(data: &Value) -> Vec<Exemplar> {
    let mut out = Vec::new();
    for series in data.as_array().into_iter().flatten() {
        let series_labels = labels(&series["seriesLabels"]);
        for e in series["exemplars"].as_array().into_iter().flatten() {
            let l = labels(&e["labels"]);
            let Some(trace_id) = l.get(looptel_catalogue::exemplars::TRACE_ID) else {
                continue;
            };
            let Some(trace_id) = crate::sources::otlp::id_hex(trace_id, 16) else {
                continue;
            };
            out.push(Exemplar {
                series: series_labels.clone(),
                trace_id,
                span_id: l.get(looptel_catalogue::exemplars::SPAN_ID).cloned(),
                value: e["value"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN),
                timestamp: e["timestamp"].as_f64().unwrap_or(0.0),
            });
        }
    }
    out
}

pub(crate) fn parse_series(data: &Value) -> Vec<Series> {
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("scalar") => point(result)
            .map(|p| Series {
                labels: BTreeMap::new(),
                points: vec![p],
            })
            .into_iter()
            .collect(),
        Some("vector") => result
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| Series {
                labels: labels(&s["metric"]),
                points: point(&s["value"]).into_iter().collect(),
            })
            .collect(),
        Some("matrix") => result
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| Series {
                labels: labels(&s["metric"]),
                points: s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(point)
                    .collect(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl MetricsSource for Prometheus {
    fn exemplars<'a>(
        &'a self,
        selector: &'a str,
        start: OffsetDateTime,
        end: OffsetDateTime,
    ) -> SourceFuture<'a, Vec<Exemplar>> {
        Box::pin(async move {
            let data = self
                .api(
                    "/api/v1/query_exemplars",
                    &[
                        ("query", selector.to_owned()),
                        ("start", unix(start)),
                        ("end", unix(end)),
                    ],
                )
                .await?;
            Ok(parse_exemplars(&data))
        })
    }

    fn query<'a>(&'a self, expr: &'a str, at: OffsetDateTime) -> SourceFuture<'a, Vec<Series>> {
        Box::pin(async move {
            let data = self
                .api(
                    "/api/v1/query",
                    &[("query", expr.to_owned()), ("time", unix(at))],
                )
                .await?;
            Ok(parse_series(&data))
        })
    }

    fn query_range<'a>(
        &'a self,
        expr: &'a str,
        start: OffsetDateTime,
        end: OffsetDateTime,
        step: Duration,
    ) -> SourceFuture<'a, Vec<Series>> {
        Box::pin(async move {
            let data = self
                .api(
                    "/api/v1/query_range",
                    &[
                        ("query", expr.to_owned()),
                        ("start", unix(start)),
                        ("end", unix(end)),
                        ("step", format!("{:.3}", step.as_secs_f64().max(0.001))),
                    ],
                )
                .await?;
            Ok(parse_series(&data))
        })
    }

    fn graph_url(&self, expr: &str) -> String {
        format!(
            "{}/graph?g0.expr={}&g0.tab=0",
            self.base,
            percent_encoding::utf8_percent_encode(expr, percent_encoding::NON_ALPHANUMERIC)
        )
    }

    fn name(&self) -> String {
        format!("prometheus {}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_answers() {
        // From Prometheus' HTTP API documentation.
        let ex = parse_answer("p", br#"{"status":"success","data":[{"seriesLabels":{"__name__":"test_exemplar_metric_total","instance":"localhost:8090","job":"prometheus","service":"bar"},
          "exemplars":[{"labels":{"trace_id":"EpTxMJ40fUus7aGY"},"value":"6","timestamp":1600096945.479},
                       {"labels":{"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331"},"value":"0.25","timestamp":1600096955.479}]}]}"#)
            .expect("success");
        let ex = parse_exemplars(&ex);
        assert_eq!(ex.len(), 1, "a trace id that is no trace id is skipped");
        assert_eq!(ex[0].trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(ex[0].series["service"], "bar");
        assert_eq!(ex[0].value, 0.25);

        let v = parse_answer(
            "p",
            br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"prometheus"},"value":[1435781451.781,"1"]},
            {"metric":{"job":"x"},"value":[1435781451.781,"NaN"]}]}}"#,
        )
        .expect("success");
        let v = parse_series(&v);
        assert_eq!(v[0].points, [(1435781451.781, 1.0)]);
        assert!(v[1].points.is_empty(), "NaN is no value");

        let m = parse_answer("p", br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"job":"node"},"values":[[1435781430.781,"1"],[1435781445.781,"+Inf"],[1435781460.781,"0.5"]]}]}}"#).expect("success");
        assert_eq!(
            parse_series(&m)[0].points,
            [(1435781430.781, 1.0), (1435781460.781, 0.5)]
        );

        let s = parse_answer(
            "p",
            br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#,
        )
        .expect("success");
        assert_eq!(parse_series(&s)[0].points, [(1.0, 2.0)]);

        let err = parse_answer(
            "p",
            br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        )
        .expect_err("an error");
        assert_eq!(err.to_string(), "p: query failed: parse error");
    }
}
