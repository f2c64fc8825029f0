//! Statistics request and response. The response is variable-length (global block, then
//! optional per-CPU and per-service blocks); [`StatsView`] validates a response once and then
//! reads from it without copying or allocating.

use super::msg::{decode_service, encode_service, SERVICE_LEN};
use super::wire::{Reader, Writer};
use super::{ControlError, Header, Kind, HEADER_LEN};
use crate::config::{Service, MAX_SERVICES};
use crate::stats::{Counters, COUNTER_COUNT};

pub const STATS_FLAG_PER_CPU: u32 = 1;
pub const STATS_FLAG_PER_SERVICE: u32 = 2;
pub const STATS_REQUEST_LEN: usize = HEADER_LEN + 8;
/// CPUs a stats response may describe (Windows supports more, in groups; the driver then
/// reports the first MAX_STATS_CPUS and sums all of them into the global block).
pub const MAX_STATS_CPUS: usize = 1024;
const COUNTERS_LEN: usize = COUNTER_COUNT * 8;
/// `cpu_count u16, service_count u16, counter_count u16, reserved u16, time_us u64`.
const STATS_FIXED_LEN: usize = HEADER_LEN + 16;

pub const fn stats_len(cpus: usize, services: usize) -> usize {
    STATS_FIXED_LEN + COUNTERS_LEN + cpus * COUNTERS_LEN + services * (SERVICE_LEN + COUNTERS_LEN)
}

/// What a stats request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsRequest {
    pub per_cpu: bool,
    pub per_service: bool,
}

impl StatsRequest {
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        let mut w = Writer::new(out);
        Header::write(&mut w, Kind::StatsRequest, STATS_REQUEST_LEN);
        w.u32(
            if self.per_cpu { STATS_FLAG_PER_CPU } else { 0 }
                | if self.per_service {
                    STATS_FLAG_PER_SERVICE
                } else {
                    0
                },
        );
        w.u32(0);
        w.done()
    }

    pub fn decode(buf: &[u8]) -> Result<StatsRequest, ControlError> {
        let mut r = Header::check(buf, Kind::StatsRequest)?;
        if buf.len() < STATS_REQUEST_LEN {
            return Err(ControlError::Short);
        }
        if buf.len() > STATS_REQUEST_LEN {
            return Err(ControlError::Long);
        }
        let flags = r.u32()?;
        r.reserved(4)?;
        if flags & !(STATS_FLAG_PER_CPU | STATS_FLAG_PER_SERVICE) != 0 {
            return Err(ControlError::Reserved);
        }
        Ok(StatsRequest {
            per_cpu: flags & STATS_FLAG_PER_CPU != 0,
            per_service: flags & STATS_FLAG_PER_SERVICE != 0,
        })
    }
}

/// Where the driver's counters come from when a response is encoded.
pub trait StatsSource {
    /// Number of CPUs with counters (the response carries at most [`MAX_STATS_CPUS`]).
    fn cpu_count(&self) -> usize;
    fn cpu(&self, index: usize) -> Counters;
    /// Sum over all CPUs.
    fn global(&self) -> Counters;
    fn service_count(&self) -> usize;
    fn service(&self, index: usize) -> (Service, Counters);
    /// Monotonic time in microseconds, so a client can turn two snapshots into rates.
    fn time_us(&self) -> u64;
}

fn write_counters(w: &mut Writer<'_>, c: &Counters) {
    for v in c.0 {
        w.u64(v);
    }
}

fn read_counters(r: &mut Reader<'_>) -> Result<Counters, ControlError> {
    let mut c = Counters::default();
    for v in &mut c.0 {
        *v = r.u64()?;
    }
    Ok(c)
}

pub fn encode_stats(
    req: StatsRequest,
    src: &impl StatsSource,
    out: &mut [u8],
) -> Result<usize, ControlError> {
    let cpus = if req.per_cpu {
        src.cpu_count().min(MAX_STATS_CPUS)
    } else {
        0
    };
    let services = if req.per_service {
        src.service_count().min(MAX_SERVICES)
    } else {
        0
    };
    let len = stats_len(cpus, services);
    if out.len() < len {
        return Err(ControlError::OutputTooSmall);
    }
    let mut w = Writer::new(out);
    Header::write(&mut w, Kind::StatsResponse, len);
    w.u16(cpus as u16);
    w.u16(services as u16);
    w.u16(COUNTER_COUNT as u16);
    w.u16(0);
    w.u64(src.time_us());
    write_counters(&mut w, &src.global());
    for i in 0..cpus {
        write_counters(&mut w, &src.cpu(i));
    }
    for i in 0..services {
        let (s, c) = src.service(i);
        encode_service(&mut w, &s);
        write_counters(&mut w, &c);
    }
    w.done()
}

/// A validated stats response.
#[derive(Clone, Copy, Debug)]
pub struct StatsView<'a> {
    buf: &'a [u8],
    cpus: usize,
    services: usize,
    time_us: u64,
}

impl<'a> StatsView<'a> {
    /// Checks the header, the counts against the exact length, and every service entry.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ControlError> {
        let mut r = Header::check(buf, Kind::StatsResponse)?;
        let cpus = r.u16()? as usize;
        let services = r.u16()? as usize;
        let counters = r.u16()? as usize;
        r.reserved(2)?;
        let time_us = r.u64()?;
        if counters != COUNTER_COUNT {
            return Err(ControlError::Version);
        }
        if cpus > MAX_STATS_CPUS || services > MAX_SERVICES {
            return Err(ControlError::OutOfRange);
        }
        let len = stats_len(cpus, services);
        if buf.len() < len {
            return Err(ControlError::Short);
        }
        if buf.len() > len {
            return Err(ControlError::Long);
        }
        let v = StatsView {
            buf,
            cpus,
            services,
            time_us,
        };
        for i in 0..services {
            v.try_service(i)?;
        }
        Ok(v)
    }

    pub fn cpu_count(&self) -> usize {
        self.cpus
    }
    pub fn service_count(&self) -> usize {
        self.services
    }
    pub fn time_us(&self) -> u64 {
        self.time_us
    }

    fn counters_at(&self, off: usize) -> Counters {
        // Offsets come from counts checked against the length in `parse`.
        let mut r = Reader::new(self.buf.get(off..).unwrap_or(&[]));
        read_counters(&mut r).unwrap_or_default()
    }

    pub fn global(&self) -> Counters {
        self.counters_at(STATS_FIXED_LEN)
    }

    pub fn cpu(&self, i: usize) -> Option<Counters> {
        (i < self.cpus).then(|| self.counters_at(STATS_FIXED_LEN + COUNTERS_LEN * (1 + i)))
    }

    fn try_service(&self, i: usize) -> Result<(Service, Counters), ControlError> {
        let off =
            STATS_FIXED_LEN + COUNTERS_LEN * (1 + self.cpus) + i * (SERVICE_LEN + COUNTERS_LEN);
        let mut r = Reader::new(self.buf.get(off..).ok_or(ControlError::Short)?);
        let s = decode_service(&mut r)?;
        Ok((s, read_counters(&mut r)?))
    }

    pub fn service(&self, i: usize) -> Option<(Service, Counters)> {
        if i < self.services {
            self.try_service(i).ok()
        } else {
            None
        }
    }
}
