//! The service mode.

/// What a service does with the bytes it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    /// Send every byte back (RFC 862).
    Echo = 0,
    /// Read and drop (RFC 863).
    Discard = 1,
    /// Send a pattern as fast as the peer reads; TCP only (on UDP it would amplify).
    Source = 2,
    /// Answer sockperf clients as `sockperf server` does.
    Sockperf = 3,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Echo, Mode::Discard, Mode::Source, Mode::Sockperf];

    pub const fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Discard => "discard",
            Mode::Source => "source",
            Mode::Sockperf => "sockperf",
        }
    }

    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Mode::Echo),
            1 => Some(Mode::Discard),
            2 => Some(Mode::Source),
            3 => Some(Mode::Sockperf),
            _ => None,
        }
    }

    /// Case-insensitive name, as [`name`](Self::name) spells it.
    pub fn parse(s: &str) -> Option<Self> {
        Mode::ALL
            .into_iter()
            .find(|m| s.eq_ignore_ascii_case(m.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.name()), Some(m));
            assert_eq!(Mode::from_u8(m as u8), Some(m));
        }
        assert_eq!(Mode::parse("ECHO"), Some(Mode::Echo));
        assert_eq!(Mode::from_u8(4), None);
    }
}
