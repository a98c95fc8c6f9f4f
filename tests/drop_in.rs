//! Issue 28: snaprelay started as `snapserver` is a drop-in for the programs and files around
//! a snapserver: Music Assistant's built-in server mode (its flags, waiting for the start-up
//! line on stdout), Debian's unit (its ExecStart line with no `-c`, reading
//! `/etc/snapserver.conf`, logging to the system log), and `logging.sink`'s other values.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

/// A `snapserver` symlink to the relay binary in `dir`, as a package installs it.
fn snapserver_link(dir: &Path) -> PathBuf {
    let link = dir.join("snapserver");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_snaprelay"), &link).expect("symlink");
    link
}

/// Kills the child when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines the child prints on stdout, as they come.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits up to `within` for a line containing `text`; returns it, or every line seen.
fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    text: &str,
    within: Duration,
) -> Result<String, Vec<String>> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(text) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    Err(seen)
}

/// The stream names Server.GetStatus reports on the JSON-RPC port.
fn stream_names(port: u16) -> Vec<String> {
    common::eventually(
        Duration::from_secs(10),
        "the JSON-RPC port listens",
        || format!("127.0.0.1:{port}"),
        || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
    );
    let answer = common::jsonrpc_call(([127, 0, 0, 1], port).into(), "Server.GetStatus", json!({}));
    answer["result"]["server"]["streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Music Assistant's built-in server mode starts `snapserver` with its own flags and waits
/// (10 s) for a stdout line with "(Snapserver) Version 0." before it connects to port 1705.
#[test]
fn music_assistant_starts_it_as_snapserver_and_sees_its_start_up_line() {
    let dir = tempfile::tempdir().unwrap();
    let snapserver = snapserver_link(dir.path());
    let control = common::free_port();
    let conf = dir.path().join("empty.conf");
    std::fs::write(&conf, "").unwrap();
    let mut child = Command::new(&snapserver)
        // Music Assistant's flags (its snapcast provider), then the test's own ports.
        .arg(format!("--server.datadir={}", dir.path().display()))
        .args(["--http.enabled=true", "--http.port=0"])
        .arg(format!("--http.doc_root={}", dir.path().display()))
        .args(["--tcp.enabled=true", &format!("--tcp.port={control}")])
        .args([
            "--stream.sampleformat=48000:16:2",
            "--stream.buffer=1000",
            "--stream.chunk_ms=20",
            "--stream.codec=flac",
            "--stream.send_to_muted=false",
            "--streaming_client.initial_volume=25",
        ])
        // Not Music Assistant's: this machine's /etc/snapserver.conf stays out of it, and the
        // test takes free ports and announces nothing.
        .arg("-c")
        .arg(&conf)
        .args([
            "--stream.source=tone:///?name=MusicAssistant",
            "--stream.port=0",
            "--grpc.port=0",
            "--server.mdns_enabled=false",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .spawn()
        .expect("start snapserver (the relay)");
    let lines = stdout_lines(&mut child);
    let _running = Running(child);
    let line = wait_for_line(&lines, "(Snapserver) Version 0.", Duration::from_secs(10))
        .unwrap_or_else(|seen| panic!("no start-up line on stdout in 10 s; saw {seen:#?}"));
    // snapserver's shape: date, time, [Level], (Tag).
    assert!(
        line.len() > 24 && line[..24].contains(' ') && line.contains("[Info] (Snapserver)"),
        "{line}"
    );
    assert_eq!(stream_names(control), ["MusicAssistant"]);
}

/// Debian's unit runs `/usr/bin/snapserver --logging.sink=system --server.datadir=${HOME}`
/// with no `-c`: the streams are those of /etc/snapserver.conf (bind-mounted here in a
/// mount namespace of the test's own), and nothing is printed, the log going to the system
/// log.
#[test]
fn debians_unit_line_serves_etc_snapserver_conf_and_logs_to_the_system_log() {
    let dir = tempfile::tempdir().unwrap();
    let snapserver = snapserver_link(dir.path());
    let control = common::free_port();
    let http = common::free_port();
    let stream = common::free_port();
    let conf = dir.path().join("snapserver.conf");
    std::fs::write(
        &conf,
        format!(
            "[server]\nmdns_enabled = false\n[http]\nport = {http}\nbind_to_address = 127.0.0.1\n\
             [tcp]\nport = {control}\nbind_to_address = 127.0.0.1\n[stream]\nport = {stream}\n\
             source = tone:///?name=Kitchen\nsource = tone:///?name=Garden&freq=660\n"
        ),
    )
    .unwrap();
    let log = SystemLogReceiver::start(dir.path());
    let script = format!(
        "set -e; mount --bind {conf} /etc/snapserver.conf; {bind_log} \
         exec {snapserver} --logging.sink=system --server.datadir={home} --grpc.port=0",
        conf = conf.display(),
        bind_log = log.bind_command(),
        snapserver = snapserver.display(),
        home = dir.path().display(),
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .spawn()
        .expect("unshare (util-linux) runs the unit's line in a mount namespace");
    let printed = stdout_lines(&mut child);
    let mut stderr = child.stderr.take().expect("stderr piped");
    let running = Running(child);
    assert_eq!(stream_names(control), ["Kitchen", "Garden"]);
    let line = log
        .wait_for("Version 0.", Duration::from_secs(10))
        .unwrap_or_else(|seen| panic!("no start-up line in the system log; got {seen:#?}"));
    assert!(line.contains("snapserver["), "syslog ident and pid: {line}");
    // Stopped, its output is complete: nothing of it went to stdout or stderr.
    drop(running);
    let stdout: Vec<String> = printed.iter().collect();
    let mut errors = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut errors).unwrap();
    assert!(
        stdout.is_empty() && errors.is_empty(),
        "logging.sink=system printed: {stdout:?} {errors}"
    );
}

/// A datagram socket standing in for the system log's `/dev/log`: made there when the
/// machine has none (and removed again), else bind-mounted over it inside the test's mount
/// namespace.
struct SystemLogReceiver {
    socket: UnixDatagram,
    path: PathBuf,
    made_dev_log: bool,
}

impl SystemLogReceiver {
    fn start(dir: &Path) -> Self {
        let dev_log = Path::new("/dev/log");
        let (path, made_dev_log) = if dev_log.exists() {
            (dir.join("log.sock"), false)
        } else {
            (dev_log.to_owned(), true)
        };
        let socket = UnixDatagram::bind(&path).expect("bind the system log socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self {
            socket,
            path,
            made_dev_log,
        }
    }

    /// The shell command that puts this socket at /dev/log in the namespace (none when it is
    /// there already).
    fn bind_command(&self) -> String {
        if self.made_dev_log {
            String::new()
        } else {
            format!("mount --bind {} /dev/log;", self.path.display())
        }
    }

    fn wait_for(&self, text: &str, within: Duration) -> Result<String, Vec<String>> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 8192];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                if line.contains(text) {
                    return Ok(line);
                }
                seen.push(line);
            }
        }
        Err(seen)
    }
}

impl Drop for SystemLogReceiver {
    fn drop(&mut self) {
        if self.made_dev_log {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `logging.sink=file:PATH` appends the log there and prints nothing; `null` prints nothing
/// at all; `stdout` moves snaprelay's own log from stderr to stdout.
#[test]
fn log_sinks_file_null_and_stdout_go_where_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.log");
    let run = |sink: &str| {
        let output = Command::new("timeout")
            .args(["-s", "INT", "2"])
            .arg(env!("CARGO_BIN_EXE_snaprelay"))
            .args([
                "--source",
                "tone:///?name=t",
                "--port",
                "0",
                "--grpc.port=0",
                "--http.port=0",
                "--tcp.port=0",
                "--server.mdns_enabled=false",
                &format!("--logging.sink={sink}"),
            ])
            .arg("--datadir")
            .arg(dir.path())
            .env_remove("RUST_LOG")
            .output()
            .expect("run snaprelay");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (stdout, stderr) = run(&format!("file:{}", file.display()));
    assert!(stdout.is_empty() && stderr.is_empty(), "{stdout}{stderr}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.contains("listening for stream clients"),
        "{written}"
    );
    let (stdout, stderr) = run("null");
    assert!(stdout.is_empty() && stderr.is_empty(), "{stdout}{stderr}");
    let (stdout, stderr) = run("stdout");
    assert!(stdout.contains("listening for stream clients"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// `-v` and `--version` print the version, as each name.
#[test]
fn version_flags_print_the_version_under_either_name() {
    let dir = tempfile::tempdir().unwrap();
    let snapserver = snapserver_link(dir.path());
    for flag in ["-v", "--version"] {
        let output = Command::new(env!("CARGO_BIN_EXE_snaprelay"))
            .arg(flag)
            .output()
            .unwrap();
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.starts_with("snaprelay "), "{text}");
        let output = Command::new(&snapserver).arg(flag).output().unwrap();
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.starts_with("snapserver v0."), "{text}");
    }
}

/// Listeners bind `::` by default, as snapserver 0.30+ (the config tests check the default):
/// bound there, IPv4 and IPv6 clients both reach them (where this host has IPv6; without it
/// the relay says so and serves IPv4).
#[test]
fn a_listener_on_the_any_address_serves_ipv4_and_ipv6() {
    let stream = common::free_port();
    let relay = common::Relay::start(&[
        "--source",
        "tone:///?name=t",
        "--bind",
        "::",
        "--port",
        &stream.to_string(),
    ]);
    let ipv6_off = relay.log().contains("IPv6 is off here");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", stream)).is_ok(),
        "IPv4: {}",
        relay.log()
    );
    if !ipv6_off {
        assert!(
            std::net::TcpStream::connect(("::1", stream)).is_ok(),
            "IPv6: {}",
            relay.log()
        );
    }
    let listening = relay.wait_for_log(&["listening for stream clients"], Duration::from_secs(5));
    assert!(
        listening.contains(if ipv6_off { "0.0.0.0:" } else { "[::]:" }),
        "{listening}"
    );
}

/// Kills a process by pid when dropped.
struct Pid(i32);

impl Drop for Pid {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the daemon this test started.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// `-d` (init scripts and packages that start snapserver that way): the command returns at
/// once, the daemon's pid is in `server.pidfile`, it runs at the nice value given and, started
/// as root, as `server.user`; it logs where `logging.sink` says and serves.
#[test]
fn daemon_mode_detaches_writes_its_pid_and_drops_root() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // The daemon's user writes its state and log here.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let snapserver = snapserver_link(dir.path());
    let conf = dir.path().join("empty.conf");
    std::fs::write(&conf, "").unwrap();
    let pidfile = dir.path().join("run").join("pid");
    let log = dir.path().join("daemon.log");
    let control = common::free_port();
    let started = Instant::now();
    let status = Command::new(&snapserver)
        .arg("-c")
        .arg(&conf)
        .arg("--daemon=5")
        .arg(format!("--server.pidfile={}", pidfile.display()))
        .args(["--server.user=nobody", "--server.mdns_enabled=false"])
        .arg(format!("--logging.sink=file:{}", log.display()))
        .arg(format!(
            "--server.datadir={}",
            dir.path().join("state").display()
        ))
        .args([
            "--stream.source=tone:///?name=Background",
            "--stream.port=0",
            "--http.enabled=false",
            "--grpc.enabled=false",
            "--tcp.bind_to_address=127.0.0.1",
            &format!("--tcp.port={control}"),
        ])
        .env_remove("RUST_LOG")
        .status()
        .expect("start the daemon");
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "-d did not return at once"
    );
    let pid: i32 = common::eventually(
        Duration::from_secs(5),
        "the pid file is written",
        || pidfile.display().to_string(),
        || std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok(),
    );
    let _daemon = Pid(pid);
    assert_eq!(stream_names(control), ["Background"]);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Field 19 (after the parenthesised name) is the nice value.
    let nice = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(16))
        .unwrap();
    assert_eq!(nice, "5", "{stat}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .unwrap()
        .to_owned();
    // SAFETY: getuid(2) only reads the test's own id.
    let own = unsafe { libc::getuid() };
    // Started as root it drops to nobody; otherwise there is nothing to drop.
    let expected = if own == 0 { 65534 } else { own }.to_string();
    assert_eq!(uid, expected, "{status}");
    let written = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        written.contains("(Snapserver) Version 0."),
        "the daemon's log: {written}"
    );
}

/// `process://`'s `wd_timeout` (restart a process whose stderr stays silent) and `log_stderr`
/// (its stderr lines at info level; debug without it, snapserver's default) are honoured.
#[test]
fn process_sources_honour_wd_timeout_and_log_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("player.sh");
    // One stderr line, then PCM silence on stdout and nothing more on stderr.
    std::fs::write(
        &script,
        "#!/bin/sh\necho hello-from-the-player >&2\nexec cat /dev/zero\n",
    )
    .unwrap();
    let source = format!(
        "process://{}?name=p&sampleformat=48000:16:2&codec=pcm&wd_timeout=1&log_stderr=true",
        script.display()
    );
    // Run through sh: the script needs no exec bit of its own.
    let source = source.replace(
        &format!("process://{}?", script.display()),
        &format!("process:///bin/sh?params={}&", script.display()),
    );
    let relay = common::Relay::start(&["--source", &source]);
    let restarted = relay.wait_for_log(
        &["went silent on stderr", "wd_timeout"],
        Duration::from_secs(10),
    );
    assert!(restarted.contains("stream=p"), "{restarted}");
    let line = relay.wait_for_log(&["hello-from-the-player"], Duration::from_secs(5));
    assert!(
        line.contains(" INFO "),
        "log_stderr=true logs at info: {line}"
    );

    let quiet = common::Relay::start(&["--source", &source.replace("&log_stderr=true", "")]);
    let line = quiet.wait_for_log(&["hello-from-the-player"], Duration::from_secs(5));
    assert!(
        line.contains(" DEBUG "),
        "without log_stderr, debug: {line}"
    );
}
