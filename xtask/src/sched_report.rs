//! Reads the hypervisor's `sched_report=` lines: each report is a
//! `sched: report at T us` line followed by one line per domain,
//! `sched: domain N (name) weight W cap C cpu time T us on cpus M`,
//! where the CPU time is what the scheduler has charged the domain so far.
//! Tests assert proportions from these, and `cargo xtask bench` prints them.

/// One domain's line of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainTime {
    pub id: u32,
    pub name: String,
    pub weight: u32,
    pub cap: u32,
    pub cpu_us: u64,
    /// The CPUs its vCPUs have run on, as xl prints a CPU list ("0-1").
    pub cpus: String,
}

/// One report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub at_us: u64,
    pub domains: Vec<DomainTime>,
}

impl Report {
    pub fn domain(&self, name: &str) -> Option<&DomainTime> {
        self.domains.iter().find(|d| d.name == name)
    }
}

/// Every complete report in a serial log, in order.
pub fn parse(log: &str) -> Vec<Report> {
    let mut reports: Vec<Report> = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.split("sched: ").nth(1) else { continue };
        if let Some(at) = rest.strip_prefix("report at ") {
            if let Some(us) = at.strip_suffix(" us").and_then(|n| n.trim().parse().ok()) {
                reports.push(Report { at_us: us, domains: Vec::new() });
            }
        } else if let Some(d) = rest.strip_prefix("domain ")
            && let Some(r) = reports.last_mut()
            && let Some(dt) = parse_domain(d)
        {
            r.domains.push(dt);
        }
    }
    reports
}

fn parse_domain(s: &str) -> Option<DomainTime> {
    let (id, rest) = s.split_once(" (")?;
    let (name, rest) = rest.split_once(") ")?;
    let mut words = rest.split_whitespace();
    let mut next_after = |key: &str| -> Option<String> {
        loop {
            if words.next()? == key {
                return words.next().map(str::to_string);
            }
        }
    };
    let weight = next_after("weight")?.parse().ok()?;
    let cap = next_after("cap")?.parse().ok()?;
    let cpu_us = next_after("time")?.parse().ok()?;
    let cpus = next_after("cpus")?;
    Some(DomainTime { id: id.trim().parse().ok()?, name: name.to_string(), weight, cap, cpu_us, cpus })
}

/// The first report from index `from` on, and the last report, that name
/// every domain in `names` (a log cut short may end in a partial report).
pub fn window<'a>(reports: &'a [Report], from: usize, names: &[&str]) -> Option<(&'a Report, &'a Report)> {
    let full = |r: &&Report| names.iter().all(|n| r.domain(n).is_some());
    let first = reports.iter().skip(from).find(full)?;
    let last = reports.iter().rev().find(full)?;
    (last.at_us > first.at_us).then_some((first, last))
}

/// CPU time each named domain got between two reports, as a fraction of
/// the time the reports are apart (1.0 = one whole CPU).
pub fn cpu_fractions(from: &Report, to: &Report, names: &[&str]) -> Result<Vec<f64>, String> {
    let window = to.at_us.checked_sub(from.at_us).filter(|w| *w > 0).ok_or("the reports are not in order")?;
    names
        .iter()
        .map(|n| {
            let a = from.domain(n).ok_or_else(|| format!("no domain {n} in the report at {} us", from.at_us))?;
            let b = to.domain(n).ok_or_else(|| format!("no domain {n} in the report at {} us", to.at_us))?;
            Ok(b.cpu_us.saturating_sub(a.cpu_us) as f64 / window as f64)
        })
        .collect()
}

/// The same, as fractions of what all of them got together.
pub fn shares(from: &Report, to: &Report, names: &[&str]) -> Result<Vec<f64>, String> {
    let f = cpu_fractions(from, to, names)?;
    let total: f64 = f.iter().sum();
    if total <= 0.0 {
        return Err("no CPU time was charged in the window".into());
    }
    Ok(f.iter().map(|x| x / total).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
[    1.000000] CPU0 INFO  sched: report at 1000000 us
[    1.000100] CPU0 INFO  sched: domain 1 (a) weight 64 cap 0 cpu time 100000 us on cpus 0-1
[    1.000200] CPU0 INFO  sched: domain 2 (b) weight 256 cap 25 cpu time 300000 us on cpus 1
[    1.200000] CPU1 INFO  (d1) spin 3
[    2.000000] CPU0 INFO  sched: report at 2000000 us
[    2.000100] CPU0 INFO  sched: domain 1 (a) weight 64 cap 0 cpu time 300000 us on cpus 0-1
[    2.000200] CPU0 INFO  sched: domain 2 (b) weight 256 cap 25 cpu time 1100000 us on cpus 1
";

    #[test]
    fn parses_reports_and_domain_lines() {
        let r = parse(LOG);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].at_us, 1_000_000);
        assert_eq!(
            r[0].domains[1],
            DomainTime { id: 2, name: "b".into(), weight: 256, cap: 25, cpu_us: 300_000, cpus: "1".into() }
        );
        assert_eq!(r[1].domain("a").map(|d| d.cpus.as_str()), Some("0-1"));
    }

    #[test]
    fn fractions_and_shares_come_from_the_deltas() {
        let r = parse(LOG);
        let f = cpu_fractions(&r[0], &r[1], &["a", "b"]).unwrap();
        assert!((f[0] - 0.2).abs() < 1e-9 && (f[1] - 0.8).abs() < 1e-9, "{f:?}");
        let s = shares(&r[0], &r[1], &["a", "b"]).unwrap();
        assert!((s[0] - 0.2).abs() < 1e-9, "{s:?}");
        assert!(cpu_fractions(&r[1], &r[0], &["a"]).is_err(), "reversed reports are refused");
        assert!(shares(&r[0], &r[1], &["c"]).is_err(), "an unknown domain is an error");
    }

    #[test]
    fn the_window_leaves_out_partial_reports() {
        let mut log = LOG.to_string();
        log.push_str("[    3.000000] CPU0 INFO  sched: report at 3000000 us\n");
        log.push_str("[    3.000100] CPU0 INFO  sched: domain 1 (a) weight 64 cap 0 cpu time 500000 us on cpus 0-1\n");
        let r = parse(&log);
        assert_eq!(r.len(), 3);
        let (a, b) = window(&r, 0, &["a", "b"]).unwrap();
        assert_eq!((a.at_us, b.at_us), (1_000_000, 2_000_000));
        let (_, b) = window(&r, 0, &["a"]).unwrap();
        assert_eq!(b.at_us, 3_000_000);
        assert!(window(&r, 1, &["a", "b"]).is_none(), "one full report is no window");
    }

    #[test]
    fn a_truncated_line_is_skipped() {
        let r = parse("sched: report at 5 us\nsched: domain 1 (a) weight 64 cap");
        assert_eq!(r.len(), 1);
        assert!(r[0].domains.is_empty());
    }
}
