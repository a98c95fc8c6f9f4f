//! The one way a test measures a noisy figure again (a sync offset, a latency, where a
//! silence falls): once, never a functional check, and every time printed and counted in the
//! file `SNAPRELAY_TEST_RETRIES` names, which scripts/test.sh reports at the end of a run
//! (failing it when one test needed more than one retry).

use std::io::Write;

/// Returns `measure()` when `within` holds for it; otherwise notes why (`why`) as a retry and
/// returns a second `measure()`, whatever it gives. Functional checks inside `measure` fail
/// the test at once, on the first try as on the second.
pub fn once_more_if<T>(
    test: &str,
    within: impl Fn(&T) -> bool,
    why: impl Fn(&T) -> String,
    measure: impl Fn() -> T,
) -> T {
    let first = measure();
    if within(&first) {
        return first;
    }
    record(test, &why(&first));
    measure()
}

/// Prints and counts one retry.
fn record(test: &str, why: &str) {
    eprintln!("retry ({test}): {why}; measuring once more with a fresh session");
    let Some(path) = std::env::var_os("SNAPRELAY_TEST_RETRIES") else {
        return;
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path);
    match file {
        Ok(mut file) => {
            let _ = writeln!(file, "{test}\t{why}");
        }
        Err(error) => eprintln!("cannot count the retry in {path:?}: {error}"),
    }
}
