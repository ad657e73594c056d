//! Prometheus metrics, served at `GET /metrics` in the text exposition format: HTTP requests
//! by route, method and status code, with latencies by route; provider component call
//! latencies by provider, function and result; the audit writer's queue depth.
//!
//! One [`Metrics`] value per server, passed down (no global registry). Labels are route
//! templates (`/v1/grants/{id}`), never concrete paths, so an id cannot become a label and
//! the series count stays bounded.
//!
//! Must never: put a request's path, query, header or body into a label.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit::AuditLog;
use crate::plugin::CallObserver;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    provider: String,
    function: String,
    result: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~3.3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    plugin_calls: Family<PluginLabels, Histogram, fn() -> Histogram>,
    audit_queue: Gauge,
    audit_batches: Counter,
    audit_rows: Counter,
    audit: Mutex<Option<AuditLog>>,
}

/// The host's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "tessera_http_requests",
            "HTTP requests served, by route template, method and status code",
            requests.clone(),
        );
        let durations: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "tessera_http_request_duration_seconds",
            "Time to the response head, by route template and method",
            durations.clone(),
        );
        let plugin_calls: Family<PluginLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "tessera_plugin_call_duration_seconds",
            "Provider component calls (sandboxed), by provider, function and result",
            plugin_calls.clone(),
        );
        let audit_queue = Gauge::default();
        registry.register(
            "tessera_audit_queue_depth",
            "Audit events waiting for the group-commit writer",
            audit_queue.clone(),
        );
        let audit_batches = Counter::default();
        registry.register(
            "tessera_audit_batches",
            "Transactions the audit writer committed (rows divided by batches is the group-commit batch size)",
            audit_batches.clone(),
        );
        let audit_rows = Counter::default();
        registry.register(
            "tessera_audit_rows",
            "Audit rows the audit writer committed",
            audit_rows.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                durations,
                plugin_calls,
                audit_queue,
                audit_batches,
                audit_rows,
                audit: Mutex::new(None),
            }),
        }
    }

    /// The observer to put into the plugin runtime's configuration.
    pub fn plugin_observer(&self) -> CallObserver {
        let calls = self.inner.plugin_calls.clone();
        CallObserver(Arc::new(
            move |provider, function, elapsed: Duration, ok| {
                calls
                    .get_or_create(&PluginLabels {
                        provider: provider.to_owned(),
                        function: function.to_owned(),
                        result: if ok { "ok" } else { "error" }.to_owned(),
                    })
                    .observe(elapsed.as_secs_f64());
            },
        ))
    }

    /// Reports this audit log's queue depth at every scrape.
    pub fn watch_audit(&self, audit: AuditLog) {
        if let Ok(mut slot) = self.inner.audit.lock() {
            *slot = Some(audit);
        }
    }

    fn record(&self, route: String, method: String, code: u16, elapsed: Duration) {
        self.inner
            .durations
            .get_or_create(&RouteLabels {
                route: route.clone(),
                method: method.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                route,
                method,
                code,
            })
            .inc();
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        if let Ok(slot) = self.inner.audit.lock()
            && let Some(audit) = slot.as_ref()
        {
            self.inner
                .audit_queue
                .set(i64::try_from(audit.queue_depth()).unwrap_or(i64::MAX));
            // The writer keeps its own totals; the counters catch up to them at each scrape.
            let stats = audit.stats();
            for (counter, total) in [
                (&self.inner.audit_batches, stats.batches),
                (&self.inner.audit_rows, stats.rows),
            ] {
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        let mut out = String::new();
        if encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Middleware: counts and times every routed request.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record(route, method, response.status().as_u16(), started.elapsed());
    response
}

/// `GET /metrics`: Prometheus text format. Unauthenticated, like `/healthz`: it holds
/// counts and latencies only; restrict it at the network edge if that matters.
pub async fn serve_metrics(State(metrics): State<Metrics>) -> Response {
    let mut response = metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_plugin_calls_show_up_with_route_templates() {
        let m = Metrics::new();
        m.record(
            "/v1/grants/{id}".into(),
            "GET".into(),
            404,
            Duration::from_micros(300),
        );
        (m.plugin_observer().0)("stripe", "sign", Duration::from_micros(20), true);
        let text = m.render();
        assert!(
            text.contains(
                r#"tessera_http_requests_total{route="/v1/grants/{id}",method="GET",code="404"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("tessera_http_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"tessera_plugin_call_duration_seconds_count{provider="stripe",function="sign",result="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains("tessera_audit_queue_depth"), "{text}");
        assert!(text.contains("tessera_audit_batches_total"), "{text}");
        assert!(text.contains("tessera_audit_rows_total"), "{text}");
    }
}
