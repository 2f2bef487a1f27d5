//! Prometheus metrics: libnetwork calls and Neutron requests, counted and timed. One
//! registry per process, reached through [`global`] so the Neutron client and the server
//! record into the same place.

use std::sync::OnceLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NeutronLabels {
    method: String,
    resource: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NeutronKind {
    method: String,
    resource: String,
}

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    call_seconds: Hist<MethodLabel>,
    neutron: Family<NeutronLabels, Counter>,
    neutron_seconds: Hist<NeutronKind>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kuryr");
        let calls = Family::<CallLabels, Counter>::default();
        let call_seconds: Hist<MethodLabel> = Family::new_with_constructor(latency_histogram);
        let neutron = Family::<NeutronLabels, Counter>::default();
        let neutron_seconds: Hist<NeutronKind> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "libnetwork_calls",
            "libnetwork calls served, by method and HTTP status",
            calls.clone(),
        );
        registry.register(
            "libnetwork_call_duration_seconds",
            "time to answer a libnetwork call",
            call_seconds.clone(),
        );
        registry.register(
            "neutron_requests",
            "requests sent to Neutron, by method, resource and status (0 = no answer)",
            neutron.clone(),
        );
        registry.register(
            "neutron_request_duration_seconds",
            "time Neutron took to answer",
            neutron_seconds.clone(),
        );
        Metrics {
            registry,
            calls,
            call_seconds,
            neutron,
            neutron_seconds,
        }
    }

    pub fn observe_call(&self, method: &str, status: u16, seconds: f64) {
        self.calls
            .get_or_create(&CallLabels {
                method: method.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.call_seconds
            .get_or_create(&MethodLabel {
                method: method.to_string(),
            })
            .observe(seconds);
    }

    pub fn observe_neutron(&self, method: &str, resource: &str, status: u16, seconds: f64) {
        self.neutron
            .get_or_create(&NeutronLabels {
                method: method.to_string(),
                resource: resource.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.neutron_seconds
            .get_or_create(&NeutronKind {
                method: method.to_string(),
                resource: resource.to_string(),
            })
            .observe(seconds);
    }

    /// The Prometheus text exposition (format 0.0.4, what `/metrics` is served as).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        prometheus_text(&out)
    }
}

/// OpenMetrics text (what the encoder writes) as Prometheus' 0.0.4 text: a counter's
/// HELP and TYPE name its samples (`x_total`, where OpenMetrics names the family `x`),
/// and no `# EOF`. Served as 0.0.4, the OpenMetrics form left Prometheus and `promtool
/// check metrics` with counters of no type and no help.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|t| t.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta.and_then(|(p, rest)| rest.split_once(' ').map(|(n, tail)| (p, n, tail))) {
            Some((p, name, tail)) if counters.contains(name) => {
                out.push_str(&format!("{p}{name}_total {tail}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.observe_call("IpamDriver.RequestPool", 200, 0.012);
        m.observe_call("IpamDriver.RequestPool", 400, 0.001);
        m.observe_neutron("POST", "ports", 201, 0.3);
        let text = m.render();
        assert!(
            text.contains(
                r#"kuryr_libnetwork_calls_total{method="IpamDriver.RequestPool",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kuryr_neutron_requests_total{method="POST",resource="ports",status="201"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("kuryr_libnetwork_call_duration_seconds_bucket"),
            "{text}"
        );
    }
}
