//! Facts about this machine that bound or colour a run: the per-process
//! open-files limit, the ephemeral port range, and how busy the CPUs were
//! (the load generator shares them with the server). Read from /proc; no
//! libc needed.

use anyhow::{Context, bail, ensure};

/// This process's soft limit on open files, from /proc (no libc needed).
pub fn open_files_limit() -> anyhow::Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").context("cannot read /proc/self/limits")?;
    parse_open_files_limit(&limits).context("no 'Max open files' line in /proc/self/limits")
}

fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    if soft == "unlimited" { Some(u64::MAX) } else { soft.parse().ok() }
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
    parse_cpu_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPU seconds (user + system) a process has used so far; `None` once it
/// is gone. /proc counts in USER_HZ, which is 100 on Linux.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    parse_process_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?).map(|t| t as f64 / 100.0)
}

fn parse_process_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count
    // from the last ')'. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Share of the machine's CPU time that was busy between two readings.
pub fn busy_pct(from: Option<(u64, u64)>, to: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (from?, to?);
    (t1 > t0).then(|| (b1 - b0) as f64 * 100.0 / (t1 - t0) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_open_files_line() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(parse_open_files_limit(limits), Some(20_000));
        assert_eq!(parse_open_files_limit("Max open files unlimited unlimited files"), Some(u64::MAX));
        assert!(open_files_limit().unwrap() > 0);
    }

    #[test]
    fn reads_tcp_kernel_memory() {
        let s = "sockets: used 30\nTCP: inuse 30011 orphan 0 tw 12 alloc 30013 mem 1234\nUDP: inuse 1 mem 0\n";
        assert_eq!(parse_tcp_mem_pages(s), Some(1_234));
        assert_eq!(parse_tcp_mem_pages("UDP: inuse 1 mem 3\n"), None);
    }

    #[test]
    fn process_ticks_are_user_plus_system() {
        let stat = "4242 (qt load (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 99 0 0";
        assert_eq!(parse_process_ticks(stat), Some(300));
        assert_eq!(parse_process_ticks("garbage"), None);
        assert!(process_cpu_s(std::process::id()).is_some());
    }

    #[test]
    fn cpu_ticks_count_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_cpu_ticks(stat), Some((150, 1000)));
        assert_eq!(busy_pct(Some((150, 1000)), Some((650, 2000))), Some(50.0));
        assert_eq!(busy_pct(None, Some((1, 1))), None);
        assert!(cpu_ticks().is_some());
    }
}
