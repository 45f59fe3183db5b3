//! Writing files safely: atomically (temporary file in the same directory, then rename)
//! and, for secrets, created with mode 0600 from the start.

use std::io::Write;
use std::path::Path;

use crate::base::error::DaemonError;

/// Writes `bytes` to `path` atomically; with `private`, the file is created 0600 (the
/// temporary file is, so the content is never readable by others, not even briefly).
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), DaemonError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| DaemonError::io(format!("creating {}", dir.display()), e))?;
    let io = |e: std::io::Error| DaemonError::io(format!("writing {}", path.display()), e);
    // tempfile creates its files 0600 on Unix.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    if !private {
        set_mode(tmp.path(), 0o644).map_err(io)?;
    }
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Writes a secret: 0600 from creation, atomically; the caller's buffer is its own to wipe.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), DaemonError> {
    write_atomic(path, bytes, true)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secrets_are_0600_and_public_files_0644() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("key");
        write_secret(&s, b"k").unwrap();
        assert_eq!(
            std::fs::metadata(&s).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let p = dir.path().join("sub/out.csv");
        write_atomic(&p, b"a\n", false).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"a\n");
        // Overwrite keeps atomicity (no temporary left behind).
        write_atomic(&p, b"b\n", false).unwrap();
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}

/// Writes one line of command output to stdout. When the reader has gone (a closed pipe,
/// as in `confide audit log | head -1`) the process ends at once with status 0, the way
/// `head`'s other writers end, instead of panicking as `println!` does; any other write
/// error ends it with status 1 and a message on stderr.
pub fn stdout_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}
