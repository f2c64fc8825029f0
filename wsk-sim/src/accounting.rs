//! Live counts of everything a driver can leak, and the leak report.

/// Live objects right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pool blocks per tag: (tag as text, blocks, bytes).
    pub pool: Vec<(String, usize, usize)>,
    pub irps: usize,
    pub mdls: usize,
    pub sockets: usize,
    pub captured_npis: usize,
    pub retained_indications: usize,
    pub retained_bytes: usize,
    /// IRPs handed to the provider and not completed yet.
    pub pending_irps: usize,
}

impl Counts {
    pub fn pool_blocks(&self) -> usize {
        self.pool.iter().map(|p| p.1).sum()
    }
}

/// Current counts.
pub fn counts() -> Counts {
    let retained = crate::wsk::indication::live();
    Counts {
        pool: crate::kernel::pool::live_by_tag()
            .into_iter()
            .map(|(t, c, b)| (crate::kernel::pool::tag_name(t), c, b))
            .collect(),
        irps: crate::kernel::irp::live_allocated().len(),
        mdls: crate::kernel::mdl::live_client().len(),
        sockets: crate::wsk::socket::live().len(),
        captured_npis: crate::wsk::clients::captures(),
        retained_indications: retained.len(),
        retained_bytes: retained.iter().map(|r| r.1).sum(),
        pending_irps: crate::kernel::irp::owned().len(),
    }
}

/// Everything still alive that a driver must have freed, one line each.
pub fn leaks() -> Vec<String> {
    let mut v = Vec::new();
    for (tag, n, bytes) in crate::kernel::pool::live_by_tag() {
        v.push(format!(
            "pool tag '{}': {n} block(s), {bytes} bytes",
            crate::kernel::pool::tag_name(tag)
        ));
    }
    for (a, st) in crate::kernel::irp::live_allocated() {
        v.push(format!(
            "IRP {a:#x} from IoAllocateIrp not freed (state {st})"
        ));
    }
    for (a, call) in crate::kernel::irp::owned() {
        v.push(format!("IRP {a:#x} still pending in {call}"));
    }
    for m in crate::kernel::mdl::live_client() {
        v.push(format!("MDL {m:#x} from IoAllocateMdl not freed"));
    }
    v.extend(crate::wsk::socket::live());
    for (s, bytes) in crate::wsk::indication::live() {
        v.push(format!("indication list of socket {s:#x} ({bytes} bytes) retained and never released with WskRelease (W68)"));
    }
    v.extend(crate::wsk::clients::leaked());
    v.extend(crate::kernel::thread::leaked());
    v.extend(crate::kernel::thread::open_handles());
    v.extend(crate::kernel::device::leaked());
    if crate::kernel::timer::armed_count() > 0 {
        v.push(format!(
            "{} timer(s) still set",
            crate::kernel::timer::armed_count()
        ));
    }
    v
}
