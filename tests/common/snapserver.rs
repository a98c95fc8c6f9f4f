//! Debian's snapserver 0.26, the peer the tests compare with, on free loopback ports.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running snapserver, killed on drop.
pub struct Snapserver {
    child: Child,
    /// Stream port.
    pub port: u16,
    /// JSON-RPC TCP port.
    pub control: u16,
    /// HTTP port.
    pub http: u16,
}

impl Snapserver {
    /// Starts snapserver with its state in `dir`, the `[stream]` `source`, and extra `[http]`
    /// lines; returns once its control port answers.
    pub fn start(dir: &Path, source: &str, http_extra: &str) -> Self {
        let binary = Path::new("/usr/bin/snapserver");
        assert!(
            binary.exists(),
            "Debian's snapserver is missing; run scripts/test.sh or `apt-get install snapserver`"
        );
        let (port, control, http) = (super::free_port(), super::free_port(), super::free_port());
        let conf = format!(
            "[server]\ndatadir = {data}\n[http]\nenabled = true\nbind_to_address = 127.0.0.1\n\
             port = {http}\n{http_extra}\n[tcp]\nenabled = true\nbind_to_address = 127.0.0.1\n\
             port = {control}\n[stream]\nbind_to_address = 127.0.0.1\nport = {port}\n\
             source = {source}\n",
            data = dir.display(),
        );
        let conf_path = dir.join("snapserver.conf");
        std::fs::write(&conf_path, conf).expect("write snapserver.conf");
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start snapserver");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", control)).is_err() {
            assert!(Instant::now() < deadline, "snapserver did not listen");
            assert!(
                child.try_wait().ok().flatten().is_none(),
                "snapserver exited"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            control,
            http,
        }
    }
}

impl Drop for Snapserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
