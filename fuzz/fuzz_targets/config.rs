//! The config parser and checker (`config::Config::parse`).
//!
//! Input: the text of a config file (invalid UTF-8 becomes U+FFFD, as a file read with
//! a lossy conversion would).
//!
//! Properties:
//! - no panic, in time linear in the input (libFuzzer's `-timeout` catches a blow-up);
//! - an error always names at least one problem, and each problem's line is 0 (not tied
//!   to a line) or a line of the input (1 ..= number of line feeds + 1);
//! - problems are sorted by line, those not tied to a line last (the doc comment's
//!   promise, which `check-config` output relies on);
//! - a config that parses respects every compiled capacity (`Limits::check` is clean),
//!   and parsing is deterministic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use xmppd::config::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let file = Path::new("/etc/xmppd/xmppd.toml");
    let result = Config::parse(file, &text);
    let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
    match &result {
        Ok(config) => {
            let problems = config.limits.check();
            assert!(
                problems.is_empty(),
                "accepted limits past capacity: {problems:?}"
            );
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "an error without problems");
            for p in problems {
                assert!(
                    p.line <= lines,
                    "problem on line {} of a {lines}-line file: {p}",
                    p.line
                );
                assert_eq!(p.file, file);
            }
            let order: Vec<usize> = problems
                .iter()
                .map(|p| if p.line == 0 { usize::MAX } else { p.line })
                .collect();
            assert!(
                order.windows(2).all(|w| w[0] <= w[1]),
                "problems not sorted by line: {order:?}"
            );
        }
    }
    assert_eq!(
        Config::parse(file, &text),
        result,
        "parsing is not deterministic"
    );
});
