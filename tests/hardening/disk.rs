//! Faults in the data dir: a full or read-only file system, and kill -9 in the middle of
//! state writes; the saved state always stays parseable and current as far as acknowledged.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::eventually;
use crate::{client_info, hello, tone_relay};

/// A tiny tmpfs mounted for one test, unmounted on drop.
struct TinyFs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyFs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs failed: this test needs root and mount permission"
        );
        Self { path, _dir: dir }
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount {options}");
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The volume the state file records for a client, if the file parses and has it.
fn saved_volume(state_file: &Path, client_id: &str) -> Result<Option<u64>, String> {
    let text = std::fs::read(state_file).map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    let groups = json["Groups"].as_array().ok_or("no Groups array")?;
    Ok(groups
        .iter()
        .flat_map(|g| g["clients"].as_array().into_iter().flatten())
        .find(|c| c["id"].as_str() == Some(client_id))
        .and_then(|c| c["config"]["volume"]["percent"].as_u64()))
}

/// Connects, says Hello and reports a mixer volume (ClientInfo, docs/PROTOCOL.md §2.5): a state
/// change.
fn report_volume(addr: SocketAddr, host_id: &str, volume: u16) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&hello(2, host_id)).unwrap();
    s.write_all(&client_info(volume)).unwrap();
    s
}

#[test]
fn a_full_or_read_only_data_dir_is_reported_and_the_old_state_survives() {
    let fs = TinyFs::mount("256k");
    let datadir = fs.path.join("state");
    let datadir_text = datadir.to_str().unwrap().to_owned();
    let relay = tone_relay(&["--datadir", &datadir_text]);
    let state_file = datadir.join("server.json");
    let _client = report_volume(relay.addr, "disk-client", 42);
    eventually(
        Duration::from_secs(10),
        "volume 42 saved",
        || relay.log(),
        || (saved_volume(&state_file, "disk-client") == Ok(Some(42))).then_some(()),
    );
    let saved = std::fs::read(&state_file).unwrap();

    // Full: a filler takes every free block, then another change must be saved.
    let filler = fs.path.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    drop(file);
    let _c2 = report_volume(relay.addr, "disk-client", 7);
    relay.wait_for_log(&["cannot save the state"], Duration::from_secs(10));
    assert_eq!(
        std::fs::read(&state_file).unwrap(),
        saved,
        "old state intact"
    );

    // Read-only: even root cannot write to a read-only mount.
    std::fs::remove_file(&filler).unwrap();
    fs.remount("ro");
    let errors = relay.log().matches("cannot save the state").count();
    let _c3 = report_volume(relay.addr, "disk-client", 9);
    eventually(
        Duration::from_secs(10),
        "the read-only failure reported",
        || relay.log(),
        || (relay.log().matches("cannot save the state").count() > errors).then_some(()),
    );
    assert_eq!(
        std::fs::read(&state_file).unwrap(),
        saved,
        "old state intact"
    );
    // Writable again: the next change is saved.
    fs.remount("rw");
    let _c4 = report_volume(relay.addr, "disk-client", 11);
    eventually(
        Duration::from_secs(10),
        "saving resumed",
        || relay.log(),
        || (saved_volume(&state_file, "disk-client") == Ok(Some(11))).then_some(()),
    );
}

#[test]
fn kill_9_during_state_writes_leaves_a_parseable_file_with_the_acknowledged_change() {
    const RELAYS: usize = 4;
    const ROUNDS: u16 = 5;
    let workers: Vec<_> = (0..RELAYS)
        .map(|r| {
            std::thread::spawn(move || {
                let dir = tempfile::tempdir().unwrap();
                let datadir = dir.path().join("state");
                let datadir_text = datadir.to_str().unwrap().to_owned();
                let state_file = datadir.join("server.json");
                let client = format!("kill-{r}");
                for round in 0..ROUNDS {
                    let relay = tone_relay(&["--datadir", &datadir_text]);
                    // Acknowledged: the change is in the file.
                    let acked = round + 1;
                    let _c = report_volume(relay.addr, &client, acked);
                    eventually(
                        Duration::from_secs(10),
                        "acknowledged volume on disk",
                        || relay.log(),
                        || {
                            (saved_volume(&state_file, &client) == Ok(Some(u64::from(acked))))
                                .then_some(())
                        },
                    );
                    // Another change, and kill -9 around when its debounced write (2 s) runs.
                    let next = 50 + acked;
                    let _c2 = report_volume(relay.addr, &client, next);
                    let jitter = u64::from(round) * 97 % 400;
                    std::thread::sleep(Duration::from_millis(1_800 + jitter));
                    // SAFETY: kill(2) on our own child's pid.
                    assert_eq!(unsafe { libc::kill(relay.pid() as i32, libc::SIGKILL) }, 0);
                    let relay_pid = relay.pid();
                    drop(relay);
                    let volume = saved_volume(&state_file, &client).unwrap_or_else(|err| {
                        panic!("state file unparseable after kill -9 of {relay_pid}: {err}")
                    });
                    assert!(
                        volume == Some(u64::from(acked)) || volume == Some(u64::from(next)),
                        "after kill -9 the file has volume {volume:?}, not {acked} or {next}"
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("kill -9 rounds");
    }
}
