//! WskRegister / WskCaptureProviderNPI / WskReleaseProviderNPI / WskDeregister and the
//! client-level provider dispatch (WskSocket, WskSocketConnect, WskControlClient, ...).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::clients::{with, Reg, REG_MAGIC};
use wsk_sys::{
    DISPATCH_LEVEL, NTSTATUS, PWSK_CLIENT_NPI, PWSK_PROVIDER_CHARACTERISTICS, PWSK_PROVIDER_NPI,
    PWSK_REGISTRATION, STATUS_DEVICE_NOT_READY, STATUS_INVALID_PARAMETER, STATUS_NOINTERFACE,
    STATUS_SUCCESS, ULONG, WSK_CLIENT_DISPATCH, WSK_INFINITE_WAIT, WSK_NO_WAIT,
};

/// `WskRegister`: PASSIVE_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn WskRegister(
    WskClientNpi: PWSK_CLIENT_NPI,
    WskRegistration: PWSK_REGISTRATION,
) -> NTSTATUS {
    crate::kernel::irql::require_passive("WskRegister");
    if WskClientNpi.is_null() || WskRegistration.is_null() {
        crate::kernel::state::violation("WskRegister with a NULL argument");
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller passes a WSK_CLIENT_NPI whose Dispatch stays resident (W2).
    let (ctx, disp) = unsafe {
        (
            (*WskClientNpi).ClientContext as usize,
            (*WskClientNpi).Dispatch,
        )
    };
    if disp.is_null() {
        crate::kernel::state::violation("WskRegister: WSK_CLIENT_NPI.Dispatch is NULL");
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: checked non-NULL; the client's dispatch table.
    let copy = unsafe { *disp };
    let blk = WskRegistration as usize;
    let dup = with(|r| r.by_block.contains_key(&blk));
    if dup {
        crate::kernel::state::violation(format!(
            "WskRegister: registration block {blk:#x} is already registered (W1)"
        ));
        return STATUS_INVALID_PARAMETER;
    }
    let token = Box::into_raw(Box::new(0u64)) as usize;
    with(|r| {
        r.by_token.insert(token, blk);
        r.by_block.insert(
            blk,
            Reg {
                client_token: token,
                context: ctx,
                dispatch: disp as usize,
                dispatch_copy: copy,
                captures: 0,
                deregistering: false,
                static_mask: 0,
                sockets_created: 0,
                cached_sds: HashSet::new(),
                list_change_irps: Vec::new(),
            },
        );
    });
    // SAFETY: WSK_REGISTRATION is provider-owned until deregistration.
    unsafe {
        (*WskRegistration).ReservedRegistrationState = REG_MAGIC;
        (*WskRegistration).ReservedRegistrationContext = token as _;
    }
    STATUS_SUCCESS
}

/// `WskCaptureProviderNPI`: W3/W4/W5.
#[no_mangle]
pub unsafe extern "win64" fn WskCaptureProviderNPI(
    WskRegistration: PWSK_REGISTRATION,
    WaitTimeout: ULONG,
    WskProviderNpi: PWSK_PROVIDER_NPI,
) -> NTSTATUS {
    if WaitTimeout == WSK_NO_WAIT {
        crate::kernel::irql::require_at_most("WskCaptureProviderNPI(WSK_NO_WAIT)", DISPATCH_LEVEL);
    } else {
        crate::kernel::irql::require_passive("WskCaptureProviderNPI with a wait");
    }
    let blk = WskRegistration as usize;
    let Some((token, version)) = with(|r| {
        r.by_block
            .get(&blk)
            .map(|g| (g.client_token, g.dispatch_copy.Version))
    }) else {
        crate::kernel::state::violation(format!(
            "WskCaptureProviderNPI: {blk:#x} is not a registered WSK_REGISTRATION"
        ));
        return STATUS_INVALID_PARAMETER;
    };
    if wsk_sys::WSK_MAJOR_VERSION(version) != 1 {
        return STATUS_NOINTERFACE;
    }
    let ready_after = Duration::from_millis(crate::kernel::state::config().provider_ready_after_ms);
    let deadline = (WaitTimeout != WSK_INFINITE_WAIT)
        .then(|| Instant::now() + Duration::from_millis(u64::from(WaitTimeout)));
    loop {
        let (dereg, start) = with(|r| {
            (
                r.by_block.get(&blk).is_none_or(|g| g.deregistering),
                r.start,
            )
        });
        if dereg {
            return STATUS_DEVICE_NOT_READY;
        }
        if start.is_none_or(|s| s.elapsed() >= ready_after) {
            break;
        }
        if WaitTimeout == WSK_NO_WAIT || deadline.is_some_and(|d| Instant::now() >= d) {
            return STATUS_DEVICE_NOT_READY;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if let Some(st) =
        crate::kernel::schedule::injected_failure(crate::config::Call::WskCaptureProviderNPI)
    {
        return st;
    }
    with(|r| {
        if let Some(g) = r.by_block.get_mut(&blk) {
            g.captures += 1;
        }
    });
    // SAFETY: the caller passes WSK_PROVIDER_NPI storage.
    unsafe {
        (*WskProviderNpi).Client = token as _;
        (*WskProviderNpi).Dispatch = &raw const super::dispatch::PROVIDER_DISPATCH;
    }
    STATUS_SUCCESS
}

/// `WskReleaseProviderNPI`: ≤ DISPATCH_LEVEL; one per successful capture.
#[no_mangle]
pub unsafe extern "win64" fn WskReleaseProviderNPI(WskRegistration: PWSK_REGISTRATION) {
    crate::kernel::irql::require_dispatch_or_below("WskReleaseProviderNPI");
    let blk = WskRegistration as usize;
    let ok = with(|r| match r.by_block.get_mut(&blk) {
        Some(g) if g.captures > 0 => {
            g.captures -= 1;
            Ok(())
        }
        Some(_) => Err("more releases than captures (W4)"),
        None => Err("not a registered WSK_REGISTRATION"),
    });
    if let Err(e) = ok {
        crate::kernel::state::violation(format!("WskReleaseProviderNPI({blk:#x}): {e}"));
    }
}

/// `WskQueryProviderCharacteristics`.
#[no_mangle]
pub unsafe extern "win64" fn WskQueryProviderCharacteristics(
    WskRegistration: PWSK_REGISTRATION,
    WskProviderCharacteristics: PWSK_PROVIDER_CHARACTERISTICS,
) -> NTSTATUS {
    crate::kernel::irql::require_dispatch_or_below("WskQueryProviderCharacteristics");
    if !with(|r| r.by_block.contains_key(&(WskRegistration as usize))) {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller passes storage for the characteristics.
    unsafe {
        (*WskProviderCharacteristics).HighestVersion = wsk_sys::MAKE_WSK_VERSION(1, 0);
        (*WskProviderCharacteristics).LowestVersion = wsk_sys::MAKE_WSK_VERSION(1, 0);
    }
    STATUS_SUCCESS
}

/// `WskDeregister`: PASSIVE_LEVEL; blocks until every capture is released and every socket
/// of the client is closed (W7), failing blocked captures at once (W5).
#[no_mangle]
pub unsafe extern "win64" fn WskDeregister(WskRegistration: PWSK_REGISTRATION) {
    crate::kernel::irql::require_passive("WskDeregister");
    let blk = WskRegistration as usize;
    let Some((token, irps)) = with(|r| {
        r.by_block.get_mut(&blk).map(|g| {
            g.deregistering = true;
            (g.client_token, std::mem::take(&mut g.list_change_irps))
        })
    }) else {
        crate::kernel::state::violation(format!(
            "WskDeregister({blk:#x}): not registered (unpaired deregister, W1)"
        ));
        return;
    };
    for irp in irps {
        super::complete::complete_now(irp as _, wsk_sys::STATUS_CANCELLED, 0);
    }
    let start = Instant::now();
    let watchdog = Duration::from_millis(crate::kernel::state::config().watchdog_ms);
    let mut warned = false;
    loop {
        let captures = with(|r| r.by_block.get(&blk).map_or(0, |g| g.captures));
        let sockets = super::socket::live_for_client(token);
        // W7: also every IRP completion still queued (e.g. a pended close) must have run.
        if captures == 0 && sockets == 0 && super::complete::queued() == 0 {
            break;
        }
        if !warned && start.elapsed() > watchdog {
            warned = true;
            crate::kernel::state::violation(format!(
                "WskDeregister still blocked after {} ms: {captures} capture(s) not released, {sockets} socket(s) not closed (C28/C29)",
                watchdog.as_millis()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let reg = with(|r| {
        r.by_token.remove(&token);
        r.by_block.remove(&blk)
    });
    if let Some(reg) = reg {
        // W2: the client dispatch must have stayed resident and unchanged.
        // SAFETY: the client promised the table stays valid until deregistration ends.
        let now = unsafe { *(reg.dispatch as *const WSK_CLIENT_DISPATCH) };
        if now.Version != reg.dispatch_copy.Version
            || now.WskClientEvent.map(|f| f as usize)
                != reg.dispatch_copy.WskClientEvent.map(|f| f as usize)
        {
            crate::kernel::state::violation(
                "WskDeregister: the WSK_CLIENT_DISPATCH changed while registered (W2)",
            );
        }
        for sd in &reg.cached_sds {
            let _ = sd;
        }
        let _ = reg.context;
        // SAFETY: allocated in WskRegister.
        drop(unsafe { Box::from_raw(reg.client_token as *mut u64) });
        if !reg.cached_sds.is_empty() {
            crate::kernel::state::violation(format!(
                "WskDeregister with {} cached security descriptor(s) not released (C31)",
                reg.cached_sds.len()
            ));
        }
    }
    // SAFETY: the block is the client's again.
    unsafe { (*WskRegistration).ReservedRegistrationState = 0 };
}
