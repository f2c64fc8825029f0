//! Test-facing configuration of one simulation run.

use wsk_sys::NTSTATUS;

/// What the sim does when the code under test breaks a documented rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationMode {
    /// Print the violation and the seed, then panic (inside an `extern "win64"` function
    /// that aborts the process, like a bugcheck). The default: nothing slips through.
    Panic,
    /// Record the violation (see [`crate::take_violations`]) and carry on, failing the call
    /// where it has a status to fail with. For tests that show the sim catches a violation.
    Record,
}

/// One simulation run's knobs. `Config::default()` is a strict, fault-free run with a seed
/// taken from `WSK_SIM_SEED` or the clock.
#[derive(Clone, Debug)]
pub struct Config {
    /// Seed of every random choice (IRQL, pend/inline, slice sizes, faults). Printed on failure.
    pub seed: u64,
    pub violations: ViolationMode,
    /// Fraction of event callbacks and asynchronous completions run at DISPATCH_LEVEL
    /// (the rest run at PASSIVE_LEVEL).
    pub dispatch_rate: f64,
    /// Fraction of IRP-taking calls that could complete inline but instead return
    /// STATUS_PENDING and complete later from another thread.
    pub pend_rate: f64,
    /// Fraction of pended calls completed on the calling thread just before STATUS_PENDING
    /// is returned (PendingReturned TRUE, W12's "already completed" case).
    pub complete_before_return_rate: f64,
    /// Fraction of calls that, having handed a pending IRP to another thread, are held back
    /// `late_return_us` (half to all of it) before returning STATUS_PENDING, as a preempted
    /// thread would be: the IRP may complete (its completion routine run on another thread)
    /// before the call returns (W12). Off by default.
    pub late_return_rate: f64,
    pub late_return_us: u64,
    /// Fraction of WskCloseSocket calls that cancel pending IRPs where the close completes
    /// before, between or after the cancelled IRPs' completions (seeded position; those
    /// after it complete on another thread), instead of after all of them. W70 promises no
    /// order. Off by default.
    pub reorder_close_rate: f64,
    /// Fraction of provider-thread passes over a connection whose event callback is running
    /// (on another thread) that still move its sends and complete them, as Windows does:
    /// completions do not wait for a callback to return. Receives still wait (they would
    /// reorder data the callback may give back). Off by default.
    pub progress_during_callback_rate: f64,
    /// Fraction of PASSIVE_LEVEL event callbacks whose thread is descheduled for
    /// `callback_stall_us` (half to all of it) on the way into the callback (preemption, VM
    /// exits): the socket is in its callback all that time. Off by default.
    pub callback_stall_rate: f64,
    pub callback_stall_us: u64,
    /// Flag WskSocket / WskSocketConnect with OwningProcess NULL made in a user process's
    /// context (an IOCTL dispatch routine): such a socket belongs to that process on
    /// Windows (W26), not to the driver. Off by default.
    pub flag_user_process_sockets: bool,
    /// Fraction of indication MDLs that come locked but not mapped (MDL_MAPPED_TO_SYSTEM_VA
    /// and MDL_SOURCE_IS_NONPAGED_POOL clear, MappedSystemVa NULL): the client maps them
    /// with MmGetSystemAddressForMdlSafe. Off by default.
    pub unmapped_mdl_rate: f64,
    /// Fraction of indications whose data comes in 1-3 byte MDLs (the first 32; the rest
    /// in one). Off by default.
    pub tiny_mdl_rate: f64,
    /// Fraction of calls that make a socket's events due again (a zero-length WskReceive
    /// after STATUS_DATA_NOT_ACCEPTED, a WskRelease) during which the socket's callbacks
    /// run, on the calling thread, before the call returns. Off by default.
    pub inline_callback_rate: f64,
    /// Fraction of the kernel calls a PASSIVE_LEVEL thread of the code under test makes
    /// (spin lock acquisition before the IRQL is raised and release after it is lowered,
    /// rundown protection, pool, IRP and MDL calls, events, the clock, DbgPrintEx, every
    /// WSK provider call) at which it is descheduled for `preempt_us` (half to all of it),
    /// callbacks and completion routines run at PASSIVE included. Off by default.
    pub preempt_rate: f64,
    pub preempt_us: u64,
    /// Fraction of WskAcceptEvent calls during which the accepted socket's events may come
    /// (on another thread) as soon as the callback has set `*AcceptSocketDispatch`: at the
    /// callback's first kernel call after that, another thread delivers the data or FIN
    /// already there (through inherited or static callbacks) while the callback waits up to
    /// `accept_race_us`. The callback is held back 1-5 ms on entry so the peer's first bytes
    /// are in. Off by default.
    pub accept_race_rate: f64,
    pub accept_race_us: u64,
    /// Fraction of WskReceiveEvent calls that indicate a connection's last data (the peer's
    /// FIN already seen) during which its WskDisconnectEvent runs on another thread: at the
    /// receive callback's first kernel call (or, if it makes none, as it returns), the
    /// callback waits up to `disconnect_race_us` for the disconnect event. W45 serialises
    /// receive events only with each other. Off by default.
    pub disconnect_race_rate: f64,
    pub disconnect_race_us: u64,
    /// Calls subject to random failure, and the failure rate and status.
    pub fail_calls: Vec<Call>,
    pub fail_rate: f64,
    pub fail_status: NTSTATUS,
    /// Calls that, given an IRP, return STATUS_NOT_IMPLEMENTED without taking or completing
    /// it: a provider that breaks W11 the way Wine's netio.sys does for functions it lacks.
    /// The IRP stays the client's, its completion routine never runs. Honoured by
    /// WskControlSocket, WskSocket, WskSocketConnect, WskBind, WskListen, WskConnect, WskSend,
    /// WskReceive, WskDisconnect, WskSendTo and WskSendMessages. WskCloseSocket closes the
    /// socket and returns STATUS_SUCCESS without completing the IRP when the close finishes at
    /// once (a close that must wait for a running callback returns STATUS_PENDING and
    /// completes as usual: a pending return promises a completion). `faults::leave_unfinished`
    /// turns the same fault on after load. Empty by default.
    pub unfinished_calls: Vec<Call>,
    /// Remote addresses whose connects are never answered (a black hole, a listener whose
    /// accept queue stays full): WskSocketConnect / WskConnect to one stays pending until the
    /// client cancels its IRP (IoCancelIrp) or closes the socket. Empty by default.
    pub unanswered_connects: Vec<std::net::SocketAddr>,
    /// Fraction of pool (ExAllocatePool2, ExAllocatePoolWithTag) / IoAllocateIrp /
    /// IoAllocateMdl calls that fail.
    pub alloc_fail_rate: f64,
    /// Fraction of socket writes after which the sim resets the connection (peer reset
    /// mid-send): the send fails with STATUS_CONNECTION_RESET.
    pub reset_rate: f64,
    /// Largest slice written to a host socket in one write (sends go out in slices).
    pub max_write_slice: usize,
    /// Largest number of bytes read for one receive indication.
    pub max_indication: usize,
    /// Largest number of datagrams in one WskReceiveFromEvent list (each list holds a seeded
    /// draw of 1 to this many of those queued).
    pub max_datagrams_per_indication: usize,
    /// Indicate random prefixes of the available data, split over several list entries
    /// and MDLs (false: everything available, up to `max_indication`, in one entry).
    pub split_indications: bool,
    /// Delayed completions wait up to this many microseconds (then reorder).
    pub max_completion_delay_us: u64,
    /// Threads that deliver delayed completions (1 to 4). Windows completes IRPs on any
    /// processor, several at once, two IRPs of one socket included; one thread serialises
    /// them, which hides a completion routine racing another one (the `parallel-completion`
    /// order turns it up to 4).
    pub completer_threads: usize,
    /// Value reported by SIO_WSK_QUERY_IDEAL_SEND_BACKLOG.
    pub ideal_send_backlog: usize,
    /// Retained bytes per socket above which indications carry WSK_FLAG_RELEASE_ASAP.
    pub release_asap_threshold: usize,
    /// Processors reported by KeQueryActiveProcessorCountEx.
    pub processor_count: u32,
    /// Milliseconds after `init` before the provider NPI can be captured (W3/W4).
    pub provider_ready_after_ms: u64,
    /// An infinite wait longer than this is reported as a probable deadlock.
    pub watchdog_ms: u64,
    /// Echo DbgPrintEx output to stderr as well as capturing it.
    pub print_dbg: bool,
    /// KeDelayExecutionThread rounds a relative delay up to a multiple of this many
    /// microseconds, as Windows rounds a sleep up to the clock interval (15 625 us by
    /// default); 0 = sleep exactly what was asked.
    pub delay_granularity_us: u64,
    /// The Windows build the kernel stands in for: routines newer than it are neither bound
    /// to an image's imports (the loader refuses the image, as Windows fails such a load
    /// with STATUS_DRIVER_ENTRYPOINT_NOT_FOUND) nor found by MmGetSystemRoutineAddress.
    /// 17763 (Windows 10 1809 / Server 2019) hides ExAllocatePool2 (19041). Default
    /// [`NEWEST_BUILD`], or `WSK_SIM_WINDOWS_BUILD`.
    pub windows_build: u32,
}

/// The build a default run stands in for (Windows 11 24H2): every routine the sim has.
pub const NEWEST_BUILD: u32 = 26100;

impl Default for Config {
    /// Strict and fault-free; `WSK_SIM_UNKIND` (comma-separated names of
    /// [`UNKIND_ORDERS`], or `all`) turns unkind orders on as [`Config::with_unkind`] does.
    fn default() -> Self {
        let cfg = Config {
            seed: seed_from_env().unwrap_or_else(clock_seed),
            violations: ViolationMode::Panic,
            dispatch_rate: 0.5,
            pend_rate: 0.3,
            complete_before_return_rate: 0.2,
            late_return_rate: 0.0,
            late_return_us: 0,
            reorder_close_rate: 0.0,
            progress_during_callback_rate: 0.0,
            callback_stall_rate: 0.0,
            callback_stall_us: 0,
            flag_user_process_sockets: false,
            unmapped_mdl_rate: 0.0,
            tiny_mdl_rate: 0.0,
            inline_callback_rate: 0.0,
            preempt_rate: 0.0,
            preempt_us: 0,
            accept_race_rate: 0.0,
            accept_race_us: 0,
            disconnect_race_rate: 0.0,
            disconnect_race_us: 0,
            fail_calls: Vec::new(),
            fail_rate: 0.0,
            fail_status: wsk_sys::STATUS_INSUFFICIENT_RESOURCES,
            unfinished_calls: Vec::new(),
            unanswered_connects: Vec::new(),
            alloc_fail_rate: 0.0,
            reset_rate: 0.0,
            max_write_slice: 16 * 1024,
            max_indication: 64 * 1024,
            max_datagrams_per_indication: 8,
            split_indications: true,
            max_completion_delay_us: 2000,
            completer_threads: 1,
            ideal_send_backlog: 64 * 1024,
            release_asap_threshold: 256 * 1024,
            processor_count: 4,
            provider_ready_after_ms: 0,
            watchdog_ms: 30_000,
            print_dbg: std::env::var_os("WSK_SIM_DBG").is_some(),
            delay_granularity_us: 0,
            windows_build: build_from_env().unwrap_or(NEWEST_BUILD),
        };
        match std::env::var("WSK_SIM_UNKIND") {
            Ok(names) => cfg
                .with_unkind(&names)
                .unwrap_or_else(|e| panic!("WSK_SIM_UNKIND: {e}")),
            Err(_) => cfg,
        }
    }
}

/// The orders the WSK docs leave open that a default run keeps kind, by the names
/// [`Config::with_unkind`] and `WSK_SIM_UNKIND` take.
pub const UNKIND_ORDERS: &[&str] = &[
    "close",
    "late-return",
    "progress",
    "stall",
    "user-process",
    "unmapped-mdl",
    "tiny-mdl",
    "inline-callback",
    "clock",
    "preempt",
    "accept-race",
    "disconnect-race",
    "parallel-completion",
];

impl Config {
    /// Turns on the unkind orders named in `names` (comma-separated [`UNKIND_ORDERS`], or
    /// `all`) at the strength the driver's suites use: `close` (reorder_close_rate 0.5),
    /// `late-return` (late_return_rate 0.2, up to 2 ms), `progress`
    /// (progress_during_callback_rate 1.0), `stall` (callback_stall_rate 0.05, up to
    /// 20 ms), `user-process` (flag_user_process_sockets), `unmapped-mdl`
    /// (unmapped_mdl_rate 0.5), `tiny-mdl` (tiny_mdl_rate 0.1), `inline-callback`
    /// (inline_callback_rate 0.5), `clock` (delay_granularity_us 15 625), `preempt`
    /// (preempt_rate 0.05, up to 40 ms), `accept-race` (accept_race_rate 0.5, waiting up to
    /// 20 ms), `disconnect-race` (disconnect_race_rate 0.5, waiting up to 20 ms),
    /// `parallel-completion` (completer_threads 4). An unknown
    /// name is an error that lists the known ones.
    pub fn with_unkind(mut self, names: &str) -> Result<Config, String> {
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let all = name == "all";
            if !all && !UNKIND_ORDERS.contains(&name) {
                return Err(format!(
                    "unknown unkind order {name:?}; known: all, {}",
                    UNKIND_ORDERS.join(", ")
                ));
            }
            if all || name == "close" {
                self.reorder_close_rate = 0.5;
            }
            if all || name == "late-return" {
                self.late_return_rate = 0.2;
                self.late_return_us = 2_000;
            }
            if all || name == "progress" {
                self.progress_during_callback_rate = 1.0;
            }
            if all || name == "stall" {
                self.callback_stall_rate = 0.05;
                self.callback_stall_us = 20_000;
            }
            if all || name == "user-process" {
                self.flag_user_process_sockets = true;
            }
            if all || name == "unmapped-mdl" {
                self.unmapped_mdl_rate = 0.5;
            }
            if all || name == "tiny-mdl" {
                self.tiny_mdl_rate = 0.1;
            }
            if all || name == "inline-callback" {
                self.inline_callback_rate = 0.5;
            }
            if all || name == "clock" {
                // Windows' default clock interval: a sleep ends on the next tick after it.
                self.delay_granularity_us = 15_625;
            }
            if all || name == "preempt" {
                // Long enough for a 5 ms housekeeping tick, even a 15.6 ms one, to come
                // round twice while the thread is off its processor.
                self.preempt_rate = 0.05;
                self.preempt_us = 40_000;
            }
            if all || name == "accept-race" {
                self.accept_race_rate = 0.5;
                self.accept_race_us = 20_000;
            }
            if all || name == "disconnect-race" {
                self.disconnect_race_rate = 0.5;
                self.disconnect_race_us = 20_000;
            }
            if all || name == "parallel-completion" {
                self.completer_threads = 4;
            }
        }
        Ok(self)
    }

    /// Default configuration that records violations instead of panicking.
    pub fn recording() -> Self {
        Config {
            violations: ViolationMode::Record,
            ..Config::default()
        }
    }

    /// No randomness in IRQL, pending or indication sizes: every callback and completion at
    /// PASSIVE, every call that can complete inline does, all available data is indicated at
    /// once. Handy for single-rule tests.
    pub fn plain() -> Self {
        Config {
            dispatch_rate: 0.0,
            pend_rate: 0.0,
            complete_before_return_rate: 0.0,
            max_completion_delay_us: 0,
            split_indications: false,
            ..Config::default()
        }
    }
}

fn build_from_env() -> Option<u32> {
    let s = std::env::var("WSK_SIM_WINDOWS_BUILD").ok()?;
    Some(
        s.trim()
            .parse()
            .unwrap_or_else(|e| panic!("WSK_SIM_WINDOWS_BUILD={s:?}: {e}")),
    )
}

fn seed_from_env() -> Option<u64> {
    let s = std::env::var("WSK_SIM_SEED").ok()?;
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

fn clock_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

/// Calls the fault schedule can fail on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    WskCaptureProviderNPI,
    WskSocket,
    WskSocketConnect,
    WskControlClient,
    WskControlSocket,
    WskBind,
    WskListen,
    WskAccept,
    WskConnect,
    WskSend,
    WskReceive,
    WskSendTo,
    WskReceiveFrom,
    WskSendMessages,
    WskDisconnect,
    /// Only for `unfinished_calls` / `faults::leave_unfinished` (a close cannot be failed).
    WskCloseSocket,
    WskGetLocalAddress,
    WskGetRemoteAddress,
    /// Every pool allocation: ExAllocatePool2 and ExAllocatePoolWithTag alike.
    ExAllocatePool2,
    IoAllocateIrp,
    IoAllocateMdl,
    IoAllocateWorkItem,
    PsCreateSystemThread,
    ObReferenceObjectByHandle,
}
