//! Links to Grafana Explore: a trace in Tempo, log lines in Loki, a series
//! in Prometheus, each over the incident's window.

use serde_json::json;
use time::OffsetDateTime;

/// Where Grafana is and the uids of its data sources (as provisioned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grafana {
    /// Grafana's base URL (`http://grafana:3000`).
    pub base: String,
    /// The Tempo data source's uid.
    pub tempo_uid: String,
    /// The Loki data source's uid.
    pub loki_uid: String,
    /// The Prometheus data source's uid.
    pub prometheus_uid: String,
}

fn ms(t: OffsetDateTime) -> String {
    (t.unix_timestamp_nanos() / 1_000_000).to_string()
}

impl Grafana {
    fn explore(
        &self,
        uid: &str,
        query: serde_json::Value,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> String {
        let panes = json!({
            "a": {
                "datasource": uid,
                "queries": [query],
                "range": { "from": ms(from), "to": ms(to) },
            }
        });
        format!(
            "{}/explore?schemaVersion=1&orgId=1&panes={}",
            self.base.trim_end_matches('/'),
            percent_encoding::utf8_percent_encode(
                &panes.to_string(),
                percent_encoding::NON_ALPHANUMERIC
            )
        )
    }

    /// A trace in Tempo.
    pub fn trace(&self, trace_id: &str, from: OffsetDateTime, to: OffsetDateTime) -> String {
        self.explore(
            &self.tempo_uid,
            json!({
                "refId": "A",
                "datasource": { "type": "tempo", "uid": self.tempo_uid },
                "queryType": "traceql",
                "query": trace_id,
            }),
            from,
            to,
        )
    }

    /// The log lines of `trace_ids` in Loki.
    pub fn logs(
        &self,
        trace_ids: &[String],
        service: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> String {
        let expr = format!(
            "{{service_name=\"{service}\"}} |~ \"{}\"",
            trace_ids.join("|")
        );
        self.explore(
            &self.loki_uid,
            json!({
                "refId": "A",
                "datasource": { "type": "loki", "uid": self.loki_uid },
                "expr": expr,
            }),
            from,
            to,
        )
    }

    /// A PromQL expression in Prometheus.
    pub fn metrics(&self, expr: &str, from: OffsetDateTime, to: OffsetDateTime) -> String {
        self.explore(
            &self.prometheus_uid,
            json!({
                "refId": "A",
                "datasource": { "type": "prometheus", "uid": self.prometheus_uid },
                "expr": expr,
                "exemplar": true,
            }),
            from,
            to,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explore_links_carry_the_datasource_query_and_range() {
        let g = Grafana {
            base: "http://grafana:3000/".to_owned(),
            tempo_uid: "tempo".to_owned(),
            loki_uid: "loki".to_owned(),
            prometheus_uid: "prometheus".to_owned(),
        };
        let from = OffsetDateTime::from_unix_timestamp(1_796_032_200).expect("time");
        let to = OffsetDateTime::from_unix_timestamp(1_796_033_400).expect("time");
        let url = g.trace("0af7651916cd43dd8448eb211c80319c", from, to);
        let (base, panes) = url.split_once("&panes=").expect("panes");
        assert_eq!(base, "http://grafana:3000/explore?schemaVersion=1&orgId=1");
        let panes = percent_encoding::percent_decode_str(panes)
            .decode_utf8()
            .expect("utf-8");
        let v: serde_json::Value = serde_json::from_str(&panes).expect("json");
        assert_eq!(
            v["a"]["queries"][0]["query"],
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(v["a"]["queries"][0]["datasource"]["uid"], "tempo");
        assert_eq!(v["a"]["range"]["from"], "1796032200000");
        let logs = g.logs(&["a".to_owned(), "b".to_owned()], "order-service", from, to);
        let logs = percent_encoding::percent_decode_str(&logs)
            .decode_utf8()
            .expect("utf-8")
            .into_owned();
        assert!(
            logs.contains(r#"{service_name=\"order-service\"} |~ \"a|b\""#),
            "{logs}"
        );
    }
}
