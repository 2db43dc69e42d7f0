//! Facts about this machine that bound or colour a run: the per-process
//! open-files limit, the ephemeral port range, the kernel's TCP memory, and
//! how much CPU a process or the whole machine used (the load generator
//! shares the CPUs with the server). Process and CPU figures come from
//! /proc through `procfs`; the two files it does not read (the port range
//! and `sockstat`) are one line each.

use anyhow::{Context, bail, ensure};
use procfs::process::{LimitValue, Process};
use procfs::{CpuTime, CurrentSI, KernelStats};

/// This process's soft limit on open files.
pub fn open_files_limit() -> anyhow::Result<u64> {
    let limits = Process::myself().and_then(|p| p.limits()).context("cannot read /proc/self/limits")?;
    Ok(limit_value(limits.max_open_files.soft_limit))
}

fn limit_value(v: LimitValue) -> u64 {
    match v {
        LimitValue::Unlimited => u64::MAX,
        LimitValue::Value(n) => n,
    }
}

/// The kernel's ephemeral port range (first, last).
pub fn ephemeral_ports() -> anyhow::Result<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .context("cannot read /proc/sys/net/ipv4/ip_local_port_range")?;
    let mut it = text.split_whitespace().map(str::parse::<u32>);
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) if a <= b => Ok((a, b)),
        _ => bail!("cannot parse ip_local_port_range {text:?}"),
    }
}

/// Refuses to start `sockets` connections in this process when its file
/// limit cannot hold them plus a margin for the runtime's own descriptors.
pub fn check_fd_budget(sockets: u64) -> anyhow::Result<u64> {
    const MARGIN: u64 = 64;
    let limit = open_files_limit()?;
    ensure!(
        sockets + MARGIN <= limit,
        "{sockets} sockets need {} open files but this process may have {limit} (ulimit -n); use more --procs",
        sockets + MARGIN
    );
    Ok(limit)
}

/// Kernel memory held by TCP sockets machine-wide, in bytes (the `mem`
/// pages of /proc/net/sockstat). Socket buffers live here, not in any
/// process's RSS.
pub fn tcp_kernel_bytes() -> Option<u64> {
    parse_tcp_mem_pages(&std::fs::read_to_string("/proc/net/sockstat").ok()?).map(|pages| pages * 4096)
}

fn parse_tcp_mem_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut fields = line.split_whitespace();
    fields.find(|f| *f == "mem")?;
    fields.next()?.parse().ok()
}

/// Busy and total CPU time of the whole machine so far, in clock ticks.
pub fn cpu_ticks() -> Option<(u64, u64)> {
    KernelStats::current().ok().map(|k| busy_and_total(&k.total))
}

fn busy_and_total(t: &CpuTime) -> (u64, u64) {
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    let idle = t.idle + t.iowait.unwrap_or(0);
    let total = t.user + t.nice + t.system + idle + t.irq.unwrap_or(0) + t.softirq.unwrap_or(0) + t.steal.unwrap_or(0);
    (total - idle, total)
}

/// CPU seconds (user + system) a process has used so far; `None` once it
/// is gone.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = Process::new(i32::try_from(pid).ok()?).and_then(|p| p.stat()).ok()?;
    Some(process_ticks(&stat) as f64 / procfs::ticks_per_second() as f64)
}

fn process_ticks(stat: &procfs::process::Stat) -> u64 {
    stat.utime + stat.stime
}

/// Share of the machine's CPU time that was busy between two readings.
pub fn busy_pct(from: Option<(u64, u64)>, to: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (from?, to?);
    (t1 > t0).then(|| (b1 - b0) as f64 * 100.0 / (t1 - t0) as f64)
}

#[cfg(test)]
mod tests {
    use procfs::prelude::*;
    use procfs::process::{Limits, Stat};

    use super::*;

    /// A whole /proc/PID/limits with the given open-files line.
    fn limits(open_files: &str) -> String {
        let mut text = String::from("Limit                     Soft Limit           Hard Limit           Units\n");
        for (name, unit) in [
            ("Max cpu time", "seconds"),
            ("Max file size", "bytes"),
            ("Max data size", "bytes"),
            ("Max stack size", "bytes"),
            ("Max core file size", "bytes"),
            ("Max resident set", "bytes"),
            ("Max processes", "processes"),
        ] {
            text.push_str(&format!("{name:<26}unlimited            unlimited            {unit}\n"));
        }
        text.push_str(open_files);
        for (name, unit) in [
            ("Max locked memory", "bytes"),
            ("Max address space", "bytes"),
            ("Max file locks", "locks"),
            ("Max pending signals", "signals"),
            ("Max msgqueue size", "bytes"),
        ] {
            text.push_str(&format!("{name:<26}unlimited            unlimited            {unit}\n"));
        }
        text.push_str(
            "Max nice priority         0                    0\nMax realtime priority     0                    0\n",
        );
        text.push_str("Max realtime timeout      unlimited            unlimited            us\n");
        text
    }

    fn parse_open_files_limit(text: &str) -> Option<u64> {
        Limits::from_read(text.as_bytes()).ok().map(|l| limit_value(l.max_open_files.soft_limit))
    }

    #[test]
    fn reads_the_open_files_line() {
        let l = limits("Max open files            20000                20000                files\n");
        assert_eq!(parse_open_files_limit(&l), Some(20_000));
        let l = limits("Max open files            unlimited            unlimited            files\n");
        assert_eq!(parse_open_files_limit(&l), Some(u64::MAX));
        assert!(open_files_limit().unwrap() > 0);
    }

    #[test]
    fn reads_tcp_kernel_memory() {
        let s = "sockets: used 30\nTCP: inuse 30011 orphan 0 tw 12 alloc 30013 mem 1234\nUDP: inuse 1 mem 0\n";
        assert_eq!(parse_tcp_mem_pages(s), Some(1_234));
        assert_eq!(parse_tcp_mem_pages("UDP: inuse 1 mem 3\n"), None);
    }

    fn parse_process_ticks(stat: &str) -> Option<u64> {
        Stat::from_read(stat.as_bytes()).ok().map(|s| process_ticks(&s))
    }

    #[test]
    fn process_ticks_are_user_plus_system() {
        let stat = "4242 (qt load (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 99 1000 200 18446744073709551615 \
                    1 2 3 4 5 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_process_ticks(stat), Some(300));
        assert_eq!(parse_process_ticks("garbage"), None);
        assert!(process_cpu_s(std::process::id()).is_some());
    }

    fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
        let info = procfs::ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: true,
        };
        KernelStats::from_read(stat.as_bytes(), &info).ok().map(|k| busy_and_total(&k.total))
    }

    #[test]
    fn cpu_ticks_count_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\nctxt 1\nbtime 1\nprocesses 1\n";
        assert_eq!(parse_cpu_ticks(stat), Some((150, 1000)));
        assert_eq!(busy_pct(Some((150, 1000)), Some((650, 2000))), Some(50.0));
        assert_eq!(busy_pct(None, Some((1, 1))), None);
        assert!(cpu_ticks().is_some());
    }
}
