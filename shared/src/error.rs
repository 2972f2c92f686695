//! Errors of the shared model. Every I/O error carries the path it was about.

use std::path::PathBuf;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reading cgroups and `/proc`, or signalling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file or directory failed (other than it having vanished).
    #[error("reading {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file's content did not parse.
    #[error("parsing {path}: {msg}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        msg: String,
    },
    /// No cgroup hierarchy was recognised under the cgroup root.
    #[error("no cgroup filesystem recognised under {0}")]
    NoCgroupFs(PathBuf),
    /// A signal could not be delivered.
    #[error("signalling pid {pid}: {source}")]
    Signal {
        /// The process.
        pid: i32,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerned.
    pub fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Read {
            path: path.into(),
            source,
        }
    }
}

/// True when an I/O error means the process or cgroup went away while it was
/// being read: normal on a live host, never reported as an error.
pub fn is_vanished(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ESRCH) | Some(libc::ENODEV)
    ) || e.kind() == std::io::ErrorKind::NotFound
}
