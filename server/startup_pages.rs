//! Gives back the code pages only start-up used, as a kernel frees its init sections.
//!
//! Start-up (arguments, configuration, the control plane, encoder set-up) runs once, but
//! every page of the binary it touched stays mapped and counts in the relay's resident set
//! for good: about 0.9 MiB, more than the sessions of a hundred clients
//! (docs/PERFORMANCE.md). Once the relay has settled, it drops the read-only mappings of its
//! own binary from its page tables (`MADV_DONTNEED`). The file's pages stay in the page
//! cache, so whatever runs next is mapped back in on first use, without I/O.
//!
//! Only mappings that hold no private copy of a page are dropped: for a written private
//! page (relocated data), `MADV_DONTNEED` would throw its contents away.

use std::io;
use std::path::Path;

/// One mapping of `/proc/self/smaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    path: String,
    /// Pages of this mapping that are the process's own copies (`Anonymous:`), in KiB.
    anonymous_kib: u64,
}

/// Parses `/proc/<pid>/smaps` text; mappings it cannot read are left out.
fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-') {
            // A header: range perms offset dev inode [path]
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                continue;
            };
            let perms = fields.next().unwrap_or("");
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            mappings.push(Mapping {
                start,
                end,
                writable: perms.contains('w'),
                path,
                anonymous_kib: 0,
            });
        } else if first == "Anonymous:" {
            if let (Some(mapping), Some(Ok(kib))) =
                (mappings.last_mut(), fields.next().map(str::parse))
            {
                mapping.anonymous_kib = kib;
            }
        }
    }
    mappings
}

/// The mappings of `exe` that are safe to drop: read-only and without private copies.
fn droppable<'a>(mappings: &'a [Mapping], exe: &Path) -> impl Iterator<Item = &'a Mapping> {
    let exe = exe.to_string_lossy().into_owned();
    mappings
        .iter()
        .filter(move |m| m.path == exe && !m.writable && m.anonymous_kib == 0)
}

/// Drops this process's clean, read-only mappings of its own binary from its page tables.
/// Returns the bytes of address space covered (not all of it was resident).
pub(crate) fn release() -> io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for mapping in droppable(&parse_smaps(&smaps), &exe) {
        let len = mapping.end - mapping.start;
        // SAFETY: the range is a whole mapping of this process (page-aligned, from smaps),
        // read-only and holding no private page, so dropping it loses nothing: later
        // accesses map the same file contents back in.
        let result =
            unsafe { libc::madvise(mapping.start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        released += len;
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
5604a1e00000-5604a1fed000 r--p 00000000 fd:01 123 /opt/snap relay/snaprelay
Size:               1972 kB
Anonymous:             0 kB
5604a1fed000-5604a25e9000 r-xp 001ed000 fd:01 123 /opt/snap relay/snaprelay
Size:               6128 kB
Anonymous:             0 kB
5604a25e9000-5604a2637000 r--p 007e9000 fd:01 123 /opt/snap relay/snaprelay
Size:                312 kB
Anonymous:           300 kB
5604a2637000-5604a264f000 rw-p 00837000 fd:01 123 /opt/snap relay/snaprelay
Anonymous:            24 kB
7f0000000000-7f0000021000 rw-p 00000000 00:00 0
Anonymous:            84 kB
7f0000100000-7f0000200000 r-xp 00000000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_mappings_of_the_binary_are_dropped() {
        let mappings = parse_smaps(SMAPS);
        assert_eq!(mappings.len(), 6);
        let exe = Path::new("/opt/snap relay/snaprelay");
        let dropped: Vec<(usize, usize)> = droppable(&mappings, exe)
            .map(|m| (m.start, m.end))
            .collect();
        // Not the relocated read-only data (private copies), not the writable data, not
        // anonymous memory, not libc.
        assert_eq!(
            dropped,
            vec![
                (0x5604_a1e0_0000, 0x5604_a1fe_d000),
                (0x5604_a1fe_d000, 0x5604_a25e_9000)
            ]
        );
    }

    #[test]
    fn releasing_keeps_the_process_running() {
        let released = release().expect("madvise on our own binary");
        assert!(released > 0, "this test binary has read-only mappings");
        // Code and read-only data come back on use, with their contents: this constant
        // lives in the read-only mapping just dropped.
        assert!(SMAPS.starts_with("5604a1e00000-5604a1fed000 r--p"));
        assert_eq!(parse_smaps(SMAPS).len(), 6);
    }
}
