//! Running work off the async runtime: CPU-heavy work on rayon, file I/O on tokio's
//! blocking pool.

use crate::error::PsiError;

/// Runs `f` on the rayon pool and awaits its result without blocking the runtime. A panic
/// in `f` (a bug) becomes an error instead of aborting the process.
pub(crate) async fn cpu<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, PsiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.await {
        Ok(Ok(r)) => Ok(r),
        _ => Err(PsiError::Internal("a rayon task panicked".into())),
    }
}

/// Runs blocking file I/O on tokio's blocking pool.
pub(crate) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, PsiError> + Send + 'static,
) -> Result<R, PsiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PsiError::Internal(format!("blocking task failed: {e}")))?
}
