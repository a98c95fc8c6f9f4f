//! snapctl's exit codes and errors, in one place (listed in `--help`, tested end to end).

use std::process::ExitCode;

use tonic::Code;

/// The process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The server refused the request.
    Refused = 1,
    /// Bad command line (clap uses this code too).
    Usage = 2,
    /// Could not reach the server, or it did not answer in time.
    Unreachable = 3,
    /// Ctrl-C during `--watch`.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error status.
    #[error("{}: {}", code_text(.0.code()), status_message(.0))]
    Status(tonic::Status),
    /// No connection could be made.
    #[error("cannot connect to {server}: {cause}")]
    Connect {
        /// The URL tried.
        server: String,
        /// Why, with the whole cause chain.
        cause: String,
    },
    /// A bad argument noticed before connecting.
    #[error("{0}")]
    Usage(String),
    /// stdout was closed by the reader (e.g. `| head`); not an error for the user.
    #[error("broken pipe")]
    BrokenPipe,
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    /// Ctrl-C during a watch.
    #[error("interrupted")]
    Interrupted,
}

impl CliError {
    /// The exit code for this error.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Status(status) => match status.code() {
                // Transport failures surface as these codes, as does a server too slow for
                // --timeout: both mean "could not get an answer", not "refused".
                Code::Unavailable | Code::DeadlineExceeded => Exit::Unreachable,
                // A connection that breaks mid-call (e.g. plain HTTP/2 to a TLS port) comes
                // back as UNKNOWN with the transport error as its source.
                _ if from_transport(status) => Exit::Unreachable,
                _ => Exit::Refused,
            },
            CliError::Connect { .. } => Exit::Unreachable,
            CliError::Usage(_) => Exit::Usage,
            CliError::BrokenPipe => Exit::Ok,
            CliError::Output(_) => Exit::Refused,
            CliError::Interrupted => Exit::Interrupted,
        }
    }
}

fn from_transport(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        if cause.is::<tonic::transport::Error>() || cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        CliError::Status(status)
    }
}

impl From<std::io::Error> for CliError {
    fn from(err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Output(err)
        }
    }
}

/// The status message, with its transport cause when there is one ("transport error" alone
/// says nothing).
fn status_message(status: &tonic::Status) -> String {
    match std::error::Error::source(status) {
        Some(cause) => {
            let cause = chain(cause);
            if cause.starts_with(status.message()) {
                cause
            } else {
                format!("{}: {cause}", status.message())
            }
        }
        None => status.message().to_owned(),
    }
}

fn code_text(code: Code) -> &'static str {
    match code {
        Code::NotFound => "not found",
        Code::InvalidArgument => "invalid argument",
        Code::FailedPrecondition => "failed precondition",
        Code::Unauthenticated => "unauthenticated",
        Code::PermissionDenied => "permission denied",
        Code::Unavailable => "server unavailable",
        Code::DeadlineExceeded => "timed out",
        Code::Unimplemented => "not supported by this server",
        _ => "server error",
    }
}

/// The whole cause chain of `err` on one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_exit_statuses() {
        let status = |code| CliError::Status(tonic::Status::new(code, "x")).exit();
        assert_eq!(status(Code::NotFound), Exit::Refused);
        assert_eq!(status(Code::Unauthenticated), Exit::Refused);
        assert_eq!(status(Code::Unavailable), Exit::Unreachable);
        assert_eq!(status(Code::DeadlineExceeded), Exit::Unreachable);
        assert_eq!(Exit::Interrupted as u8, 130);
        let pipe = CliError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(pipe.exit(), Exit::Ok);
    }
}
