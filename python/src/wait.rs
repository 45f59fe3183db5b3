//! Waiting on the daemon without holding the GIL, and Ctrl-C while waiting.
//!
//! Every call runs on the client's own Tokio runtime with the GIL released; every 100 ms
//! the wait takes the GIL back just long enough to run Python's signal handlers
//! (`Python::check_signals`), so a KeyboardInterrupt arrives while a job runs. A submitted
//! job is then cancelled at this party's daemon (which tells every other party) before
//! the interrupt is raised.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confide::base::config::PartyConfig;
use confide::cli::CliError;
use confide::cli::daemon::cancel_job;
use pyo3::prelude::*;

/// How often a wait checks for Python signals.
const SIGNAL_POLL: Duration = Duration::from_millis(100);
/// How long an interrupt that came before the job's first event waits for its id.
const ID_WAIT: Duration = Duration::from_secs(5);
/// How long an interrupted job's final event is awaited after its cancellation.
const CANCEL_WAIT: Duration = Duration::from_secs(20);

/// Why a wait ended without a result.
pub enum Stopped {
    /// The call failed.
    Failed(CliError),
    /// A Python signal handler raised (KeyboardInterrupt from Ctrl-C).
    Interrupted(PyErr),
}

/// An exception raised inside a progress callback (a KeyboardInterrupt that arrived while
/// Python code ran there), for the wait to act on.
pub type Raised = Arc<Mutex<Option<PyErr>>>;

/// Runs `fut` to its end with the GIL released, checking signals meanwhile. When a
/// handler raises (or `raised` holds an interrupt from a progress callback) and `job`
/// holds the id of the job `fut` follows, that job is cancelled and its end awaited (at
/// most [`CANCEL_WAIT`]) before the exception is returned.
pub fn wait<T, F>(
    py: Python<'_>,
    rt: &tokio::runtime::Runtime,
    cfg: &PartyConfig,
    job: Option<(&Arc<Mutex<String>>, &Raised)>,
    fut: F,
) -> Result<T, Stopped>
where
    F: Future<Output = Result<T, CliError>> + Send,
    T: Send,
{
    py.detach(|| {
        rt.block_on(async {
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    r = &mut fut => return r.map_err(Stopped::Failed),
                    _ = tokio::time::sleep(SIGNAL_POLL) => {
                        let from_callback = job.and_then(|(_, r)| r.lock().ok()?.take());
                        let interrupt = match from_callback {
                            Some(e) => e,
                            None => match Python::attach(|py| py.check_signals()) {
                                Ok(()) => continue,
                                Err(e) => e,
                            },
                        };
                        let id_now = || {
                            job.and_then(|(j, _)| j.lock().ok().map(|s| s.clone()))
                                .unwrap_or_default()
                        };
                        let mut id = id_now();
                        // Interrupted after submitting but before the daemon's first event:
                        // the job exists, so wait a moment for its id to cancel it too.
                        let deadline = tokio::time::Instant::now() + ID_WAIT;
                        while job.is_some() && id.is_empty() && tokio::time::Instant::now() < deadline {
                            tokio::select! {
                                _ = &mut fut => return Err(Stopped::Interrupted(interrupt)),
                                _ = tokio::time::sleep(Duration::from_millis(20)) => id = id_now(),
                            }
                        }
                        if !id.is_empty() {
                            let _ = cancel_job(cfg, &id).await;
                            let _ = tokio::time::timeout(CANCEL_WAIT, &mut fut).await;
                        }
                        return Err(Stopped::Interrupted(interrupt));
                    }
                }
            }
        })
    })
}
