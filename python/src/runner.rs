//! Runs Rust work for Python: on the shared tokio runtime, with the GIL
//! released, while the calling thread polls every 100 ms for Ctrl-C (and
//! reports progress). On `KeyboardInterrupt` the work is cancelled through
//! its `CancellationToken` and awaited (it saves its state), then the
//! exception is raised.

use std::future::Future;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mlyexport::fetch::Progress;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio_util::sync::CancellationToken;

use crate::errors::{Kind, raise};

/// How often the calling thread checks for signals and reports progress.
const POLL: Duration = Duration::from_millis(100);
/// How long cancelled work may take to save its state before Python gets
/// the `KeyboardInterrupt` anyway.
const STOP_WAIT: Duration = Duration::from_secs(10);

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The shared multi-threaded runtime (made on first use).
pub fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mlyexport")
        .build()
        .map_err(|e| raise(Kind::Error, format!("cannot start the async runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// What a long call reports progress to: a Python callable taking a dict of
/// counters, and the counters.
pub struct Watch<'a, 'py> {
    pub callback: Option<&'a Bound<'py, PyAny>>,
    pub progress: Arc<Progress>,
}

impl Watch<'_, '_> {
    fn report(&self) -> PyResult<()> {
        let Some(cb) = self.callback else {
            return Ok(());
        };
        cb.call1((snapshot(cb.py(), &self.progress)?,))?;
        Ok(())
    }
}

/// The counters of `p` as a dict.
pub fn snapshot<'py>(py: Python<'py>, p: &Progress) -> PyResult<Bound<'py, PyDict>> {
    use std::sync::atomic::Ordering::Relaxed;
    let d = PyDict::new(py);
    let phase = match p.phase.load(Relaxed) {
        0 => "listing",
        1 => "downloading",
        _ => "done",
    };
    d.set_item("phase", phase)?;
    for (k, v) in [
        ("grids_total", &p.grids_total),
        ("grids_listed", &p.grids_listed),
        ("listed", &p.listed),
        ("to_download", &p.to_download),
        ("downloaded", &p.downloaded),
        ("skipped", &p.skipped),
        ("failed", &p.failed),
        ("bytes", &p.bytes),
    ] {
        d.set_item(k, v.load(Relaxed))?;
    }
    Ok(d)
}

/// Runs the future `make` returns to completion on the shared runtime, on a
/// thread of its own with the GIL released (the engine's futures are not
/// `Send`, so the future is made on that thread); Ctrl-C cancels `cancel`,
/// waits for the work to stop, then raises `KeyboardInterrupt`.
pub fn run<T, F, M>(
    py: Python<'_>,
    cancel: &CancellationToken,
    watch: Option<&Watch<'_, '_>>,
    make: M,
) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = T>,
    M: FnOnce() -> F + Send + 'static,
{
    let rt = runtime()?;
    let (tx, mut rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("mlyexport-engine".into())
        .spawn(move || {
            let _ = tx.send(rt.block_on(make()));
        })
        .map_err(|e| raise(Kind::Error, format!("cannot start a thread: {e}")))?;
    loop {
        let got;
        (got, rx) = wait(py, rx, POLL);
        match got {
            Ok(v) => {
                if let Some(w) = watch {
                    w.report()?;
                }
                return Ok(v);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(raise(
                    Kind::Error,
                    "the mlyexport worker stopped unexpectedly",
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let polled = py
            .check_signals()
            .and_then(|()| watch.map_or(Ok(()), |w| w.report()));
        if let Err(interrupt) = polled {
            cancel.cancel();
            let _ = wait(py, rx, STOP_WAIT);
            return Err(interrupt);
        }
    }
}

/// Runs blocking (non-async) work on a thread with the GIL released,
/// polling for Ctrl-C. Blocking work cannot be cancelled: on Ctrl-C the
/// exception is raised at once and the work finishes in the background
/// (its writes are atomic, so the folder stays usable).
pub fn run_blocking<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("mlyexport-work".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| raise(Kind::Error, format!("cannot start a thread: {e}")))?;
    loop {
        let got;
        (got, rx) = wait(py, rx, POLL);
        match got {
            Ok(v) => return Ok(v),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(raise(
                    Kind::Error,
                    "the mlyexport worker stopped unexpectedly",
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
        }
    }
}

/// Waits up to `timeout` for the result with the GIL released (the receiver
/// moves in and out: it is not `Sync`).
fn wait<T: Send>(
    py: Python<'_>,
    rx: mpsc::Receiver<T>,
    timeout: Duration,
) -> (Result<T, mpsc::RecvTimeoutError>, mpsc::Receiver<T>) {
    py.detach(move || (rx.recv_timeout(timeout), rx))
}
