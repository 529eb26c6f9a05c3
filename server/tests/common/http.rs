//! Scraping a node's `/metrics`, `/healthz` and `/readyz` with a real HTTP client, and
//! reading the exposition with a Prometheus parser.

#![allow(dead_code)]

use std::time::Duration;

/// An HTTP client that hands back every status instead of failing on 4xx/5xx.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// GET `url`: (status, body).
pub fn get(agent: &ureq::Agent, url: &str) -> (u16, String) {
    let mut response = agent.get(url).call().unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// One sample's value in a scrape, by name and labels.
pub fn sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// GET `url` and parse it as an exposition.
pub fn scrape(agent: &ureq::Agent, url: &str) -> prometheus_parse::Scrape {
    let (status, body) = get(agent, url);
    assert_eq!(status, 200, "{url}: {body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}
