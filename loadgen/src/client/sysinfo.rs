//! Where the time went: the worker threads' CPU time (getrusage) and, on Linux, each TCP
//! connection's TCP_INFO (retransmits, RTT, congestion window) at the end of the run.

use serde::{Deserialize, Serialize};

/// CPU time of one worker thread, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThreadCpu {
    pub user_s: f64,
    pub system_s: f64,
}

/// User and system CPU time of the calling thread so far (None where the OS has no per-thread
/// getrusage).
#[cfg(target_os = "linux")]
pub(crate) fn thread_cpu() -> Option<ThreadCpu> {
    // SAFETY: all-zero is a valid rusage; getrusage writes into it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD with a valid pointer to our rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &raw mut u) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(ThreadCpu {
        user_s: secs(u.ru_utime),
        system_s: secs(u.ru_stime),
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn thread_cpu() -> Option<ThreadCpu> {
    None
}

/// TCP_INFO summed over the connections of a run (read just before each is closed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpInfoSum {
    /// Connections whose TCP_INFO was read.
    pub connections: u64,
    /// Segments retransmitted, all connections together.
    pub retransmits: u64,
    /// Smoothed RTT (µs), mean and maximum over the connections.
    pub rtt_us_mean: f64,
    pub rtt_us_max: f64,
    /// Congestion window (segments), mean over the connections.
    pub cwnd_mean: f64,
}

impl TcpInfoSum {
    pub(crate) fn add(&mut self, o: &TcpInfoSum) {
        let n = self.connections + o.connections;
        if n == 0 {
            return;
        }
        let mean =
            |a: f64, b: f64| (a * self.connections as f64 + b * o.connections as f64) / n as f64;
        self.rtt_us_mean = mean(self.rtt_us_mean, o.rtt_us_mean);
        self.cwnd_mean = mean(self.cwnd_mean, o.cwnd_mean);
        self.rtt_us_max = self.rtt_us_max.max(o.rtt_us_max);
        self.retransmits += o.retransmits;
        self.connections = n;
    }
}

/// One connection's TCP_INFO as a one-connection sum.
#[cfg(target_os = "linux")]
pub(crate) fn tcp_info(sock: &impl std::os::fd::AsRawFd) -> Option<TcpInfoSum> {
    // SAFETY: all-zero is a valid tcp_info; getsockopt writes at most `len` bytes into it.
    let mut ti: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a valid fd, a pointer to our tcp_info and its length.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut ti).cast(),
            &raw mut len,
        )
    };
    if r != 0 {
        return None;
    }
    Some(TcpInfoSum {
        connections: 1,
        retransmits: u64::from(ti.tcpi_total_retrans),
        rtt_us_mean: f64::from(ti.tcpi_rtt),
        rtt_us_max: f64::from(ti.tcpi_rtt),
        cwnd_mean: f64::from(ti.tcpi_snd_cwnd),
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn tcp_info<T>(_sock: &T) -> Option<TcpInfoSum> {
    None
}
