//! Provider threads: poll the host sockets, and for each ready socket plan under the provider
//! lock (events/) what to complete and which callback to invoke, then do it unlocked.

use std::os::fd::AsRawFd;

use wsk_sys::{PIRP, WSK_EVENT_ACCEPT, WSK_EVENT_RECEIVE, WSK_EVENT_RECEIVE_FROM};

use super::events::{self, Completion, Plan};
use super::socket::{self, Kind, Provider, Sock};
use super::wake::THREADS;

pub(crate) fn ensure_started() {
    super::wake::set_service(service);
    super::wake::start_once(|i, fd| {
        std::thread::Builder::new()
            .name(format!("wsk-sim-provider-{i}"))
            .spawn(move || crate::kernel::state::sim_thread_main(move || run(i, fd)))
            .expect("spawn provider thread");
    });
}

fn run(idx: usize, wake_fd: i32) {
    crate::kernel::state::mark_sim_thread();
    loop {
        let (mut pfds, ids, busy) = socket::with(|p| {
            let mut pfds = Vec::new();
            let mut ids = Vec::new();
            let mut busy = false;
            for (ws, s) in &p.sockets {
                if s.owner % THREADS != idx && !events::connection::sends_may_move(s) {
                    continue;
                }
                let (ev, work) = interest(s);
                if work {
                    busy = true;
                }
                if ev != 0 || work {
                    ids.push(*ws);
                }
                if ev != 0 {
                    if let Some(fd) = s.fd.as_ref() {
                        pfds.push(libc::pollfd {
                            fd: fd.as_raw_fd(),
                            events: ev,
                            revents: 0,
                        });
                    }
                }
            }
            (pfds, ids, busy)
        });
        pfds.push(libc::pollfd {
            fd: wake_fd,
            events: libc::POLLIN,
            revents: 0,
        });
        let timeout = if busy { 0 } else { 20 };
        // SAFETY: `pfds` is a valid array of pollfd.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        let mut drain = [0u8; 8];
        // SAFETY: reading our eventfd's counter (non-blocking).
        unsafe { libc::read(wake_fd, drain.as_mut_ptr().cast(), 8) };
        for ws in ids {
            service(ws);
        }
        if busy {
            std::thread::yield_now();
        }
    }
}

/// Poll events wanted, and whether there is work that needs no readiness.
#[allow(clippy::collapsible_match)] // a listening stream socket must not fall into the connection arm
fn interest(s: &Sock) -> (i16, bool) {
    if events::connection::sends_may_move(s) {
        return (libc::POLLOUT, false);
    }
    if s.closing.is_some() || s.running != 0 {
        return (0, false);
    }
    if s.killed {
        return (0, !s.kill_reported);
    }
    match s.kind {
        Kind::Listen | Kind::Stream if s.listening => (events::listen::interest(s), false),
        Kind::Connection | Kind::Stream => events::connection::interest(s),
        Kind::Datagram => events::datagram::interest(s),
        _ => (0, false),
    }
}

fn service(ws: usize) {
    for _ in 0..16 {
        let plan = socket::with(|p| plan(p, ws));
        match plan {
            Plan::Nothing => return,
            Plan::Complete(c) => run_completions(c),
            Plan::Run(job, c) => {
                run_completions(c);
                job.run();
            }
        }
    }
}

fn run_completions(c: Vec<Completion>) {
    for (irp, st, info) in c {
        if irp != 0 {
            super::complete::complete_async(irp as PIRP, st, info);
        }
    }
}

fn plan(p: &mut Provider, ws: usize) -> Plan {
    let Some(s) = p.sockets.get_mut(&ws) else {
        return Plan::Nothing;
    };
    if events::connection::sends_may_move(s)
        && crate::kernel::schedule::chance(
            crate::kernel::state::config().progress_during_callback_rate,
        )
    {
        return events::connection::plan_sends(p, ws);
    }
    if s.closing.is_some() || s.running != 0 {
        return Plan::Nothing;
    }
    if s.killed {
        return plan_killed(s, ws);
    }
    let done = match events::connection::plan_connect(p, ws) {
        Ok(done) => done,
        Err(plan) => return plan,
    };
    let s = p.sockets.get(&ws).expect("live");
    match s.kind {
        Kind::Listen | Kind::Stream if s.listening => events::listen::plan(p, ws, done),
        Kind::Connection | Kind::Stream if s.connected => events::connection::plan(p, ws, done),
        Kind::Datagram => events::datagram::plan(p, ws, done),
        _ => Plan::completing(done),
    }
}

/// W48/W52/W60: a non-functional socket gets one NULL indication if its callback is on.
fn plan_killed(s: &mut Sock, ws: usize) -> Plan {
    if s.kill_reported {
        return Plan::Nothing;
    }
    s.kill_reported = true;
    let e = s.events();
    match s.kind {
        Kind::Listen | Kind::Stream
            if s.listening && e & WSK_EVENT_ACCEPT != 0 && s.dispatch != 0 =>
        {
            events::listen::plan_killed(s, ws)
        }
        Kind::Datagram if e & WSK_EVENT_RECEIVE_FROM != 0 && s.dispatch != 0 => {
            events::datagram::plan_killed(s, ws)
        }
        Kind::Connection | Kind::Stream
            if e & WSK_EVENT_RECEIVE != 0 && !events::connection::client_dispatch(s).is_null() =>
        {
            events::connection::plan_killed(s, ws)
        }
        _ => Plan::Nothing,
    }
}
