//! What the load generator reads from the operating system: its open-file limit,
//! a process's memory and CPU time from `/proc`, free ports.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::Context;

/// Raises this process's soft open-file limit to its hard limit and returns the
/// new soft limit. Children spawned afterwards (the servers) inherit it.
pub fn raise_fd_limit() -> anyhow::Result<u64> {
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .context("cannot read RLIMIT_NOFILE")?;
    if soft < hard {
        rlimit::Resource::NOFILE
            .set(hard, hard)
            .with_context(|| format!("cannot raise RLIMIT_NOFILE from {soft} to {hard}"))?;
    }
    Ok(hard)
}

/// Checks that `needed` descriptors fit under the soft limit, with a message that
/// says what to do when they do not.
pub fn check_fd_budget(limit: u64, needed: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        needed <= limit,
        "{needed} file descriptors needed but the open-file limit is {limit}: \
         raise the hard limit (`ulimit -Hn`, /etc/security/limits.conf) or use fewer connections"
    );
    Ok(())
}

/// Resident memory of process `pid`, in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Clock ticks per second of `/proc/PID/stat` times. `sysconf(_SC_CLK_TCK)` is
/// 100 on every Linux architecture tokio runs on (USER_HZ is fixed by the ABI).
const CLOCK_TICKS: u64 = 100;

/// CPU time (user + system) used so far by process `pid`; `None` for this process.
pub fn cpu_time(pid: Option<u32>) -> anyhow::Result<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count the
    // fields after its closing parenthesis. utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("unexpected {path}"))
    };
    // Field 3 (state) is fields[0], so field n is fields[n - 3].
    let total = ticks(14 - 3)? + ticks(15 - 3)?;
    Ok(Duration::from_millis(total * 1000 / CLOCK_TICKS))
}

/// CPU time of the whole machine so far, from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineTime {
    /// user + nice + system + steal: processes (ours and others) and the
    /// kernel working for them.
    pub tasks: Duration,
    /// irq + softirq: mostly the loopback network stack delivering our packets,
    /// which no process's own CPU time includes.
    pub interrupts: Duration,
}

pub fn machine_time() -> anyhow::Result<MachineTime> {
    let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let sum = |idx: &[usize]| -> Duration {
        let ticks: u64 = idx.iter().filter_map(|&i| fields.get(i)).sum();
        Duration::from_millis(ticks * 1000 / CLOCK_TICKS)
    };
    Ok(MachineTime {
        tasks: sum(&[0, 1, 2, 7]),
        interrupts: sum(&[5, 6]),
    })
}

/// A port on 127.0.0.1 that was free a moment ago (bound, read, released), for a
/// server that is told its address on the command line.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`).
pub fn ephemeral_ports() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>());
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .unwrap_or((32768, 60999))
}

/// Mebibytes from KiB, for tables.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let rss = rss_kib(std::process::id()).expect("own status");
        assert!(rss > 0);
        cpu_time(None).expect("own stat");
        cpu_time(Some(std::process::id())).expect("own stat by pid");
        machine_time().expect("machine stat");
    }

    #[test]
    fn ephemeral_range_is_sane() {
        let (lo, hi) = ephemeral_ports();
        assert!(lo < hi);
    }
}
