//! Samples collected over repetitions, and the statistics the report shows.

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub decimals: usize,
}

const fn m(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    better: Better,
    decimals: usize,
) -> Metric {
    Metric {
        key,
        label,
        unit,
        better,
        decimals,
    }
}

use Better::{Higher, Lower};

/// Every metric the suite records, in report order.
pub const METRICS: &[Metric] = &[
    m(
        "cold_start_ms",
        "cold start: process start → first STARTTLS+SCRAM login",
        "ms",
        Lower,
        1,
    ),
    m("idle_rss_mib", "RSS idle after start", "MiB", Lower, 2),
    m(
        "idle_anon_mib",
        "… of which anonymous (RssAnon: heap, stacks; the rest is file pages)",
        "MiB",
        Lower,
        2,
    ),
    m(
        "idle_plain_kib",
        "memory per idle session, plain TCP",
        "KiB",
        Lower,
        1,
    ),
    m(
        "idle_tls_kib",
        "memory per idle session, STARTTLS",
        "KiB",
        Lower,
        1,
    ),
    m(
        "idle_plain_rate",
        "logins/s opening the idle sessions, plain",
        "1/s",
        Higher,
        0,
    ),
    m(
        "idle_tls_rate",
        "logins/s opening the idle sessions, STARTTLS",
        "1/s",
        Higher,
        0,
    ),
    m(
        "tput_plain_cpu_us",
        "server CPU per delivered message, plain",
        "µs",
        Lower,
        2,
    ),
    m(
        "tput_tls_cpu_us",
        "server CPU per delivered message, STARTTLS",
        "µs",
        Lower,
        2,
    ),
    m(
        "tput_plain_rate",
        "delivered messages/s, plain",
        "1/s",
        Higher,
        0,
    ),
    m(
        "tput_tls_rate",
        "delivered messages/s, STARTTLS",
        "1/s",
        Higher,
        0,
    ),
    m(
        "tput_plain_p50_ms",
        "latency under load p50, plain",
        "ms",
        Lower,
        2,
    ),
    m(
        "tput_plain_p99_ms",
        "latency under load p99, plain",
        "ms",
        Lower,
        2,
    ),
    m(
        "tput_tls_p50_ms",
        "latency under load p50, STARTTLS",
        "ms",
        Lower,
        2,
    ),
    m(
        "tput_tls_p99_ms",
        "latency under load p99, STARTTLS",
        "ms",
        Lower,
        2,
    ),
    m(
        "tput_arch_cpu_us",
        "server CPU per delivered message, plain, archived",
        "µs",
        Lower,
        2,
    ),
    m(
        "tput_arch_rate",
        "delivered messages/s, plain, archived",
        "1/s",
        Higher,
        0,
    ),
    m(
        "tput_arch_p50_ms",
        "latency under load p50, plain, archived",
        "ms",
        Lower,
        2,
    ),
    m(
        "tput_arch_p99_ms",
        "latency under load p99, plain, archived",
        "ms",
        Lower,
        2,
    ),
    m(
        "lat_p50_us",
        "unloaded latency p50 (1 pair, window 1, STARTTLS)",
        "µs",
        Lower,
        0,
    ),
    m(
        "lat_p99_us",
        "unloaded latency p99 (1 pair, window 1, STARTTLS)",
        "µs",
        Lower,
        0,
    ),
    m(
        "storm_cpu_ms",
        "server CPU per login (STARTTLS + SCRAM-SHA-1 + bind + close)",
        "ms",
        Lower,
        3,
    ),
    m(
        "storm_rate",
        "logins/s in the login storm",
        "1/s",
        Higher,
        0,
    ),
    m(
        "fanout_cpu_us",
        "server CPU per presence delivery (fan-out)",
        "µs",
        Lower,
        2,
    ),
    m(
        "fanout_rate",
        "presence deliveries/s (fan-out)",
        "1/s",
        Higher,
        0,
    ),
    m(
        "archive_write_bytes",
        "bytes written to storage per archived message, {rate} msg/s (/proc/PID/io write_bytes)",
        "B",
        Lower,
        0,
    ),
    m(
        "archive_growth_bytes",
        "data directory growth per archived message, {rate} msg/s",
        "B",
        Lower,
        0,
    ),
    m(
        "archive_syncs_per_s",
        "fsync, fdatasync and other sync calls per second, {rate} msg/s",
        "1/s",
        Lower,
        1,
    ),
    m(
        "archive_cpu_us",
        "server CPU per archived message, {rate} msg/s paced, plain",
        "µs",
        Lower,
        1,
    ),
    m(
        "bench_cpu_tput_plain",
        "generator CPU during throughput, plain",
        "% of a core",
        Lower,
        0,
    ),
    m(
        "bench_cpu_tput_tls",
        "generator CPU during throughput, STARTTLS",
        "% of a core",
        Lower,
        0,
    ),
    m(
        "bench_cpu_tput_arch",
        "generator CPU during throughput, plain, archived",
        "% of a core",
        Lower,
        0,
    ),
    m(
        "bench_cpu_storm",
        "generator CPU during the login storm",
        "% of a core",
        Lower,
        0,
    ),
    m(
        "bench_cpu_fanout",
        "generator CPU during fan-out",
        "% of a core",
        Lower,
        0,
    ),
];

pub fn metric(key: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.key == key)
}

impl Metric {
    /// The label with the archive scenario's rate filled in.
    pub fn label_at(&self, archive_rate: u32) -> String {
        self.label.replace("{rate}", &archive_rate.to_string())
    }
}

/// metric key → server → samples (in the order taken).
#[derive(Default, Clone)]
pub struct Results {
    pub samples: BTreeMap<&'static str, BTreeMap<String, Vec<f64>>>,
    pub failures: Vec<String>,
}

impl Results {
    pub fn add(&mut self, key: &'static str, server: &str, value: Option<f64>) {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            self.samples
                .entry(key)
                .or_default()
                .entry(server.to_string())
                .or_default()
                .push(v);
        }
    }

    pub fn get(&self, key: &str, server: &str) -> Option<&[f64]> {
        self.samples.get(key)?.get(server).map(|v| v.as_slice())
    }

    pub fn stats(&self, key: &str, server: &str) -> Option<Stats> {
        Stats::of(self.get(key, server)?)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stats {
    pub fn of(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        assert_eq!(
            Stats::of(&[3.0, 1.0, 2.0]).unwrap(),
            Stats {
                median: 2.0,
                min: 1.0,
                max: 3.0,
                n: 3
            }
        );
        assert_eq!(Stats::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn drops_missing_and_non_finite() {
        let mut r = Results::default();
        r.add("idle_rss_mib", "a", None);
        r.add("idle_rss_mib", "a", Some(f64::NAN));
        r.add("idle_rss_mib", "a", Some(1.0));
        assert_eq!(r.get("idle_rss_mib", "a"), Some(&[1.0][..]));
        assert!(metric("idle_rss_mib").is_some() && metric("nope").is_none());
        let label = metric("archive_syncs_per_s").unwrap().label_at(50);
        assert!(label.ends_with(", 50 msg/s"), "{label}");
    }
}
