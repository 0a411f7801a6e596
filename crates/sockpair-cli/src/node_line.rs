//! The check of `sockpair run --node` on each stdin line before it goes to Node: Node's
//! IPC reader parses every line with `JSON.parse`, and an empty line or invalid JSON
//! would kill the child. Self-contained (serde_json only), so that the fuzz target
//! `node_line` in `fuzz/` compiles this very file.

/// Whether `line` (without its newline) is one JSON value, as Node's IPC reader needs.
///
/// # Errors
///
/// What is wrong with it, in words, for the user.
pub fn check(line: &[u8]) -> Result<(), String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err("empty line: Node's IPC channel takes one JSON message per line".into());
    }
    // Node decodes the line as UTF-8 first, replacing what is not: refused here, so
    // that nothing reaches the child altered.
    let line = std::str::from_utf8(line).map_err(|err| {
        format!(
            "invalid UTF-8 at byte {}: Node would read it as U+FFFD",
            err.valid_up_to()
        )
    })?;
    serde_json::from_str::<serde::de::IgnoredAny>(line)
        .map(drop)
        .map_err(|err| format!("invalid JSON: {err}"))
}

/// What the fuzz target `node_line` and the corpus test check of any `line`: [`check`]
/// never panics; a line it passes is UTF-8 and not blank; and every line that parses as
/// a `serde_json::Value` passes. (The converse does not hold, as with Node: JSON.parse,
/// like the check, takes any depth, lone surrogates and numbers past `f64`.)
///
/// # Panics
///
/// If that does not hold.
#[allow(dead_code, reason = "called by the fuzz target and the tests only")]
pub fn check_agrees_with_value(line: &[u8]) {
    let passed = check(line).is_ok();
    if passed {
        assert!(std::str::from_utf8(line).is_ok(), "invalid UTF-8 passed");
        assert!(
            !line.iter().all(u8::is_ascii_whitespace),
            "a blank line passed"
        );
    }
    let value = serde_json::from_slice::<serde_json::Value>(line);
    assert!(
        passed || value.is_err(),
        "a JSON value was refused: {value:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn one_json_value_per_line_passes_and_nothing_else() {
        assert!(check(br#"{"cmd":"ping","n":[1,2.5,null,"\u00e9"]}"#).is_ok());
        assert!(check(b"  7 ").is_ok());
        for bad in [
            &b""[..],
            b" \t\r",
            b"{",
            b"1 2",
            b"\xff",
            b"\"\xff\"",
            b"[1,]",
            b"{'a':1}",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        // Node's JSON.parse takes any depth and lone surrogates; so does the check,
        // without a stack overflow.
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(check(deep.as_bytes()).is_ok());
        assert!(check(br#""\udc00""#).is_ok());
        assert!(check(&deep.as_bytes()[1..]).is_err());
    }

    /// The fuzz target's corpus (`fuzz/corpus/node_line/`), replayed.
    #[test]
    fn the_fuzz_corpus_passes() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/node_line");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            super::check_agrees_with_value(&data);
            count += 1;
        }
        assert!(count > 0, "no corpus in {dir:?}");
    }
}
