//! The kernel-side load client's per-connection message state (platform-free): an echo client
//! has one message of the source pattern out at a time and counts complete echoes; a paced
//! client (echo or source) needs a ticket from its job's rate budget for each new message.
//! Served connections leave it at its default (unpaced, no message state): only `load`
//! changes it.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientState {
    /// A new message needs a ticket.
    pub paced: bool,
    /// Tickets granted and not used yet.
    pub tickets: u32,
    /// Echo client: a message is out and its echo not complete yet; bytes of it received.
    outstanding: bool,
    rx: usize,
    pub messages_sent: u64,
    pub messages_received: u64,
    /// An outbound connect step's IRP (WskSocketConnect, or WskSocket / WskBind / WskConnect
    /// of a stream socket) is WSK's: a job stop or an unload may cancel it.
    pub connect_out: bool,
    /// Stoppers inside IoCancelIrp on that IRP: the context is neither recycled nor its IRP
    /// re-armed for someone else until they are out.
    pub cancelling: u32,
    /// The connect ended without a socket while a stopper was inside: the last one out gives
    /// the context back.
    pub release_deferred: bool,
}

impl ClientState {
    pub const fn new() -> Self {
        Self {
            paced: false,
            tickets: 0,
            outstanding: false,
            rx: 0,
            messages_sent: 0,
            messages_received: 0,
            connect_out: false,
            cancelling: 0,
            release_deferred: false,
        }
    }

    /// A new message could go out but for want of a ticket. `echo`: one message at a time.
    pub fn wants_ticket(&self, echo: bool) -> bool {
        self.paced && self.tickets == 0 && !(echo && self.outstanding)
    }

    /// A new message may go out now.
    pub fn may_send(&self, echo: bool) -> bool {
        !(echo && self.outstanding) && (!self.paced || self.tickets > 0)
    }

    /// A message went out (its ticket is used).
    pub fn sent(&mut self, echo: bool) {
        self.tickets = self.tickets.saturating_sub(1);
        if echo {
            self.outstanding = true;
            self.messages_sent += 1;
        }
    }

    /// Echo client: `n` more bytes of echo arrived for `msg`-byte messages (verified by the
    /// caller against the pattern at [`offset`](Self::offset) first).
    pub fn received(&mut self, n: usize, msg: usize) {
        self.rx += n;
        while self.rx >= msg && self.outstanding {
            self.rx -= msg;
            self.messages_received += 1;
            self.outstanding = false;
        }
    }

    /// Echo client: offset within the current message of the next byte to arrive.
    pub fn offset(&self) -> usize {
        self.rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_client_counts_whole_echoes_only() {
        let mut c = ClientState::new();
        assert!(c.may_send(true));
        c.sent(true);
        assert!(!c.may_send(true), "one message at a time");
        c.received(60, 100);
        assert_eq!((c.offset(), c.messages_received), (60, 0));
        c.received(40, 100);
        assert_eq!((c.messages_sent, c.messages_received), (1, 1));
        assert!(c.may_send(true));
    }

    #[test]
    fn paced_needs_a_ticket() {
        let mut c = ClientState {
            paced: true,
            ..ClientState::new()
        };
        assert!(c.wants_ticket(false) && !c.may_send(false));
        c.tickets = 1;
        assert!(c.may_send(false));
        c.sent(false);
        assert_eq!(c.tickets, 0);
        assert_eq!(c.messages_sent, 0, "source messages are counted by bytes");
    }

    /// `wants_ticket` is true only when all three hold: paced, no ticket left, and (for an
    /// echo client) no message out. Each case where one of them fails must say false (kills
    /// the "always true" and `&&` -> `||` mutants).
    #[test]
    fn wants_ticket_needs_paced_and_empty_and_idle() {
        let unpaced = ClientState::new();
        assert!(!unpaced.wants_ticket(false), "unpaced never wants a ticket");
        assert!(!unpaced.wants_ticket(true));
        let with_ticket = ClientState {
            paced: true,
            tickets: 1,
            ..ClientState::new()
        };
        assert!(!with_ticket.wants_ticket(false), "a ticket in hand");
        assert!(!with_ticket.wants_ticket(true));
        let mut echo_out = ClientState {
            paced: true,
            tickets: 1,
            ..ClientState::new()
        };
        echo_out.sent(true);
        assert_eq!(echo_out.tickets, 0);
        assert!(
            !echo_out.wants_ticket(true),
            "an echo client with its message out waits for the echo, not a ticket"
        );
        assert!(
            echo_out.wants_ticket(false),
            "a source client is never held by an outstanding message"
        );
        let paced = ClientState {
            paced: true,
            ..ClientState::new()
        };
        assert!(paced.wants_ticket(true) && paced.wants_ticket(false));
    }

    /// Bytes beyond the completed message stay as the offset into the next one: an echo that
    /// arrives with more than one message's bytes leaves `rx - msg` (kills `-=` -> `+=`/`/=`).
    #[test]
    fn received_keeps_the_remainder_as_offset() {
        let mut c = ClientState::new();
        c.sent(true);
        c.received(100, 100);
        assert_eq!(
            (c.offset(), c.messages_received),
            (0, 1),
            "exactly one message"
        );
        c.sent(true);
        c.received(130, 100);
        assert_eq!(
            (c.offset(), c.messages_received),
            (30, 2),
            "30 bytes of the next message already in"
        );
        // Nothing is out: the loop stops after one message even with two messages' bytes.
        c.sent(true);
        c.received(270, 100);
        assert_eq!((c.offset(), c.messages_received), (200, 3));
    }
}
