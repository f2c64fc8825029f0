//! The conformance suite passes against the mock, and catches handlers that break the rules.
use control::conformance::run;
use control::ioctl::{dispatch, IOCTL_WSKECHO_LOAD_START};
use control::mock::MockDriver;

fn suite(
    mut h: impl FnMut(u32, &[u8], &mut [u8]) -> (i32, usize),
) -> Vec<control::conformance::Case> {
    let mut call = |code: u32, input: &[u8], cap: usize| {
        let mut out = vec![0u8; cap];
        let (s, n) = h(code, input, &mut out);
        out.truncate(if s < 0 && (s as u32) >> 30 == 3 { 0 } else { n });
        Ok((s, out))
    };
    run(&mut call, 9)
}

#[test]
fn mock_conforms() {
    let mut m = MockDriver::new(2);
    let cases = suite(|c, i, o| dispatch(&mut m, c, i, o));
    let failed: Vec<_> = cases.iter().filter(|c| !c.passed()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(cases.len() > 60, "{}", cases.len());
}

#[test]
fn broken_handlers_are_caught() {
    // Ignores the ABI version (rewrites it to the current one before decoding).
    let mut m = MockDriver::new(1);
    let cases = suite(|c, i, o| {
        let mut v = i.to_vec();
        if v.len() >= 2 {
            v[..2].copy_from_slice(&control::ioctl::ABI_VERSION.to_le_bytes());
        }
        dispatch(&mut m, c, &v, o)
    });
    assert!(cases
        .iter()
        .any(|c| !c.passed() && c.name.contains("ABI version")));

    // Answers unknown codes as if they were a version query.
    let mut m = MockDriver::new(1);
    let cases = suite(|c, i, o| {
        let c = if control::ioctl::ALL_CODES.contains(&c) {
            c
        } else {
            control::ioctl::IOCTL_WSKECHO_QUERY_VERSION
        };
        dispatch(&mut m, c, i, o)
    });
    assert!(cases
        .iter()
        .any(|c| !c.passed() && c.name == "unknown IOCTL code"));

    // Starts the job before checking the output capacity.
    let mut m = MockDriver::new(1);
    let cases = suite(|c, i, o| {
        if c == IOCTL_WSKECHO_LOAD_START {
            if let Ok(j) = control::ioctl::decode_load_start(i) {
                let _ = control::ioctl::ControlHandler::load_start(&mut m, &j);
            }
        }
        dispatch(&mut m, c, i, o)
    });
    assert!(cases
        .iter()
        .any(|c| !c.passed() && c.name.contains("no load job started")));

    // Changes the configuration on a refused request.
    let mut m = MockDriver::new(1);
    let mut n = 0;
    let cases = suite(|c, i, o| {
        if c == control::ioctl::IOCTL_WSKECHO_SET_CONFIG {
            n += 1;
            if n == 3 {
                m.config.limits.max_connections = 5;
            }
        }
        dispatch(&mut m, c, i, o)
    });
    assert!(cases
        .iter()
        .any(|c| !c.passed() && c.name.contains("configuration unchanged")));
}
