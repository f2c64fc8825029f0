//! A seed's plan: the target, the starting configuration and the list of events, all drawn
//! from the seed alone, so `CAMPAIGN_SEED` replays the same list (thread timing still varies:
//! the wsk-sim seed is the campaign seed too, so its own choices replay as well).

use std::fmt;

/// splitmix64: small, good enough for choosing events, and no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_c0de_ca4b_a16e)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `p` percent.
    pub fn pct(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// How a TCP echo client ends its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// Write everything, half-close (FIN), read the echo to the server's FIN: every byte
    /// written must come back before it.
    Half,
    /// Write, read part of the echo, write more, close with unread data (an RST).
    Abort,
}

/// Where a kernel load job connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobTo {
    /// The driver's own TCP echo service (plain or stream listener), echo pattern.
    OwnEcho,
    /// The driver's TCP discard service, source pattern.
    OwnDiscard,
    /// The driver's UDP echo service.
    OwnUdpEcho,
    /// A loopback port whose accept queue is full: connects are never answered.
    NeverAnswers,
    /// A closed loopback port: connects are refused.
    Refused,
}

/// One step of a seed, run in order by the campaign's control thread. Traffic events start a
/// client thread and return at once; control events run to completion.
#[derive(Clone, Debug)]
pub enum Ev {
    /// TCP echo: `len` bytes in `chunk`-byte writes on the `pick`th echo service.
    TcpEcho {
        pick: u32,
        len: usize,
        chunk: usize,
        close: Close,
    },
    /// UDP echo from `sources` loopback addresses (127.0.0.2...), `count` datagrams each.
    Udp {
        pick: u32,
        sources: u8,
        count: u32,
        size: usize,
    },
    SockperfTcp {
        pick: u32,
        msgs: u32,
    },
    SockperfUdp {
        pick: u32,
        msgs: u32,
    },
    Source {
        pick: u32,
        bytes: usize,
    },
    Discard {
        pick: u32,
        bytes: usize,
    },
    JobStart {
        to: JobTo,
        conns: u32,
        size: u32,
        ms: u32,
        rate: u32,
        stream: bool,
    },
    JobStop,
    /// `load status`: the kernel echo client's byte checks must never have failed.
    JobStatus,
    /// A valid live limit change.
    SetLimits {
        disconnect_ms: u32,
        idle_ms: u32,
        zero_copy: bool,
        udp_rate: u32,
        exempt_loopback: bool,
        /// Allow only 10.0.0.0/8: loopback clients are refused until the next change.
        deny_loopback: bool,
    },
    AddService {
        tcp: bool,
        mode: control::config::Mode,
        stream: bool,
    },
    /// Removes the `pick`th service the campaign added (the starting ones stay).
    RemoveService {
        pick: u32,
    },
    /// `config set` replace that fails half-way: new live limits, one added service removed,
    /// one new service opened, then one whose port is taken. Nothing may change.
    FailingReplace {
        pick: u32,
        idle_ms: u32,
    },
    /// wsk-sim kills the `pick`th service's socket (a failing transport).
    KillService {
        pick: u32,
    },
    /// Connects to the never-answering port give up now (SYN retries exhausted).
    TimeOutConnects,
    /// The never-answering port starts answering: connects still pending complete
    /// successfully at their next SYN retry, whatever the job or the driver is doing then.
    AnswerConnects,
    /// Wait for every client and the job; then no connection context may stay open.
    Quiesce,
    Pause {
        ms: u64,
    },
}

impl Ev {
    /// The name CAMPAIGN_ONLY selects this kind of event by.
    pub fn kind(&self) -> &'static str {
        match self {
            Ev::TcpEcho { .. } => "echo",
            Ev::Udp { .. } => "udp",
            Ev::SockperfTcp { .. } | Ev::SockperfUdp { .. } => "sockperf",
            Ev::Source { .. } => "source",
            Ev::Discard { .. } => "discard",
            Ev::JobStart { .. } | Ev::JobStop | Ev::JobStatus => "job",
            Ev::SetLimits { .. } => "limits",
            Ev::AddService { .. } | Ev::RemoveService { .. } => "services",
            Ev::FailingReplace { .. } => "replace",
            Ev::KillService { .. } => "kill",
            Ev::TimeOutConnects | Ev::AnswerConnects => "blackhole",
            Ev::Quiesce => "quiesce",
            Ev::Pause { .. } => "pause",
        }
    }
}

/// Everything a seed runs.
pub struct Plan {
    pub seed: u64,
    pub image: bool,
    pub v6: bool,
    /// The TCP echo service listens on a stream socket (the second one always does).
    pub disconnect_ms: u32,
    /// An unload slower than its bound is rescued by answering the pending connects (they
    /// then complete during the unload) instead of timing them out.
    pub rescue_by_answer: bool,
    pub late_answers: bool,
    pub events: Vec<(u64, Ev)>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {:#x}: {} driver, {}, DisconnectTimeoutMs {}, {} events then unload{}",
            self.seed,
            if self.image { "image" } else { "built-in" },
            if self.v6 { "::1" } else { "127.0.0.1" },
            self.disconnect_ms,
            self.events.len(),
            if self.late_answers {
                ""
            } else {
                " (late answers off)"
            }
        )
    }
}

const MODES: [control::config::Mode; 4] = [
    control::config::Mode::Echo,
    control::config::Mode::Discard,
    control::config::Mode::Source,
    control::config::Mode::Sockperf,
];

impl Plan {
    /// The plan of `seed`; `image_available`: odd seeds run the shipped image. With `only`
    /// (CAMPAIGN_ONLY, e.g. `job,kill`), only events of those kinds ([`Ev::kind`]) are drawn:
    /// a focused soak of one part of the control plane.
    ///
    /// `late_answers` off: the never-answering port's connects are only ever timed out, never
    /// answered late (no AnswerConnects, slow unloads rescued by time-outs): on main a connect
    /// completing during the unload leaves a socket nobody closes and DriverUnload hangs in
    /// WskDeregister (issue 17 items 1 and 3), which no seed after it could survive.
    pub fn focused(
        seed: u64,
        image_available: bool,
        only: Option<&[String]>,
        late_answers: bool,
    ) -> Plan {
        let mut r = Rng::new(seed);
        let image = image_available && seed % 2 == 1;
        let v6 = r.pct(20);
        let disconnect_ms = r.pick(&[100u32, 300, 1000]);
        let n = r.range(6, 40) as usize;
        let mut events = Vec::with_capacity(n + 2);
        while events.len() < n {
            let gap = r.pick(&[0u64, 0, 1, 2, 5, 10, 20, 50]);
            let mut ev = Self::draw(&mut r);
            // Bounded: a kind not in `only` is redrawn (a list naming no kind runs pauses).
            for _ in 0..1000 {
                if only.is_none_or(|o| o.iter().any(|k| k == ev.kind())) {
                    break;
                }
                ev = Self::draw(&mut r);
            }
            let racing_stop = matches!(ev, Ev::JobStart { .. }) && r.pct(50);
            let late_answer = matches!(
                ev,
                Ev::JobStart {
                    to: JobTo::NeverAnswers,
                    ..
                }
            ) && r.pct(50)
                && late_answers;
            if matches!(ev, Ev::AnswerConnects) && !late_answers {
                ev = Ev::TimeOutConnects;
            }
            events.push((gap, ev));
            if racing_stop {
                // A stop (or the unload, when the list ends here) racing the job's connects.
                events.push((r.range(0, 15), Ev::JobStop));
            }
            if late_answer {
                // Connects still pending after the stop (or during the unload) complete at
                // their next SYN retry, 1 s after they started: issue 17 item 1's race.
                events.push((r.range(0, 1200), Ev::AnswerConnects));
            }
        }
        Plan {
            seed,
            image,
            v6,
            disconnect_ms,
            rescue_by_answer: r.pct(50) && late_answers,
            late_answers,
            events,
        }
    }

    fn draw(r: &mut Rng) -> Ev {
        let pick = r.next() as u32;
        match r.range(0, 99) {
            0..=17 => Ev::TcpEcho {
                pick,
                len: r.pick(&[1usize, 100, 1500, 1500, 4000, 65_536, 200_000]),
                chunk: r.pick(&[1usize, 7, 512, 1460, 16_384, 65_536]),
                close: if r.pct(75) { Close::Half } else { Close::Abort },
            },
            18..=27 => Ev::Udp {
                pick,
                sources: r.range(1, 12) as u8,
                count: r.range(1, 60) as u32,
                size: r.pick(&[8usize, 100, 1400, 9000]),
            },
            28..=32 => Ev::SockperfTcp {
                pick,
                msgs: r.range(1, 100) as u32,
            },
            33..=35 => Ev::SockperfUdp {
                pick,
                msgs: r.range(1, 30) as u32,
            },
            36..=40 => Ev::Source {
                pick,
                bytes: r.pick(&[1usize, 5000, 300_000]),
            },
            41..=44 => Ev::Discard {
                pick,
                bytes: r.pick(&[1usize, 5000, 300_000]),
            },
            45..=59 => Ev::JobStart {
                to: r.pick(&[
                    JobTo::OwnEcho,
                    JobTo::OwnEcho,
                    JobTo::OwnEcho,
                    JobTo::OwnDiscard,
                    JobTo::OwnUdpEcho,
                    JobTo::NeverAnswers,
                    JobTo::NeverAnswers,
                    JobTo::Refused,
                ]),
                conns: r.pick(&[1u32, 2, 4, 8, 16, 16, 64]),
                size: r.pick(&[1u32, 100, 1500, 16_384]),
                ms: r.pick(&[50u32, 200, 1000, 5000]),
                rate: r.pick(&[0u32, 0, 200]),
                stream: r.pct(50),
            },
            60..=64 => Ev::JobStop,
            65..=67 => Ev::JobStatus,
            68..=73 => Ev::SetLimits {
                disconnect_ms: r.pick(&[100u32, 300, 1000]),
                idle_ms: r.pick(&[10_000u32, 60_000, 300_000]),
                zero_copy: r.pct(70),
                udp_rate: r.pick(&[0u32, 5, 1000]),
                exempt_loopback: r.pct(50),
                deny_loopback: r.pct(10),
            },
            74..=78 => Ev::AddService {
                tcp: r.pct(70),
                mode: r.pick(&MODES),
                stream: r.pct(50),
            },
            79..=81 => Ev::RemoveService { pick },
            82..=86 => Ev::FailingReplace {
                pick,
                idle_ms: r.pick(&[20_000u32, 120_000]),
            },
            87..=89 => Ev::KillService { pick },
            90..=91 => Ev::TimeOutConnects,
            92 => Ev::AnswerConnects,
            93..=95 => Ev::Quiesce,
            _ => Ev::Pause {
                ms: r.pick(&[10u64, 50, 200]),
            },
        }
    }
}
