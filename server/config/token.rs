//! The bearer token of the control APIs: `grpc.token_file` (its first line, trimmed) or
//! `grpc.token`, read the same way for gRPC, JSON-RPC and `--check-config`.

use std::path::{Path, PathBuf};

use super::GrpcConfig;

/// Why `grpc.token_file` gave no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("grpc.token_file {} is not readable: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file's first line is empty.
    #[error("grpc.token_file {} is empty", .0.display())]
    Empty(PathBuf),
}

/// The token in the file at `path`: its first line with surrounding whitespace trimmed (a
/// trailing newline, as editors and `kubectl create secret` leave, is not part of it).
/// Bytes that are not UTF-8 are replaced rather than refused.
///
/// # Errors
///
/// The file cannot be read, or its first line is empty.
pub fn read_token(path: &Path) -> Result<String, TokenFileError> {
    let bytes = std::fs::read(path).map_err(|source| TokenFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(TokenFileError::Empty(path.to_owned()));
    }
    Ok(token.to_owned())
}

impl GrpcConfig {
    /// The token the control APIs require, if any: the token file's when `token_file` is set
    /// (it wins, keeping the secret out of argv and the environment), else `token` when not
    /// empty.
    ///
    /// # Errors
    ///
    /// See [`read_token`].
    pub(crate) fn resolve_token(&self) -> Result<Option<String>, TokenFileError> {
        match &self.token_file {
            Some(path) => read_token(path).map(Some),
            None if !self.token.is_empty() => Ok(Some(self.token.clone())),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_trimmed_and_the_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret \nsecond line\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "s3cret");
        let mut grpc = GrpcConfig {
            token: "from-config".into(),
            ..GrpcConfig::default()
        };
        assert_eq!(
            grpc.resolve_token().unwrap().as_deref(),
            Some("from-config")
        );
        grpc.token_file = Some(path);
        assert_eq!(grpc.resolve_token().unwrap().as_deref(), Some("s3cret"));
        assert_eq!(GrpcConfig::default().resolve_token().unwrap(), None);
    }

    #[test]
    fn unreadable_and_empty_files_name_the_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent");
        let error = read_token(&missing).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "grpc.token_file {} is not readable: ",
                missing.display()
            )),
            "{error}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n  \n").unwrap();
        assert_eq!(
            read_token(&empty).unwrap_err().to_string(),
            format!("grpc.token_file {} is empty", empty.display())
        );
    }
}
