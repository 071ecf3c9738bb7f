//! The threads that serve client connections: one single-threaded tokio runtime each, one per
//! core by default, as nginx runs a worker process per core. The accept loop hands each new
//! connection to the next worker, round-robin; it stays there, and so do the backend
//! connections it uses (a pool per worker, `upstream.rs`): each thread waits in its own
//! `epoll` for its own sockets, and no request moves between threads.
//!
//! With all connections on one multi-threaded runtime, one thread took every readiness event
//! and woke the other to share the work; under load the machine then sat idle ~8% of the time
//! (the load generator and the backend waiting on the proxy) where nginx left ~5%, and the
//! proxy served 0.91–1.02× nginx's requests/s (median 0.93 over seven rounds) at the same CPU
//! per request. Per-core runtimes
//! leave as little idle as nginx (`benches/RESULTS.md`).

use std::{
    cell::Cell,
    future::Future,
    io,
    sync::atomic::{AtomicUsize, Ordering},
    thread::JoinHandle,
};

use tokio::{net::TcpStream, runtime::Handle, sync::oneshot};

thread_local! {
    /// This thread's worker number; 0 outside the workers.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// This thread's worker number, for per-worker state (`0..count`, 0 outside the workers).
pub(crate) fn current() -> usize {
    WORKER.with(Cell::get)
}

/// The worker threads, each running a single-threaded runtime.
pub(crate) struct Workers {
    workers: Vec<Worker>,
    next: AtomicUsize,
}

struct Worker {
    /// Spawns onto its runtime.
    handle: Handle,
    /// Its thread runs until this is dropped.
    _running: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Workers {
    /// `count` workers (at least 1).
    pub(crate) fn start(count: usize) -> io::Result<Self> {
        let workers = (0..count.max(1))
            .map(|index| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let handle = runtime.handle().clone();
                let (running, stopped) = oneshot::channel::<()>();
                let thread = std::thread::Builder::new()
                    .name(format!("proxy-worker-{index}"))
                    .spawn(move || {
                        WORKER.with(|w| w.set(index));
                        runtime.block_on(async {
                            let _ = stopped.await;
                        });
                    })?;
                Ok(Worker {
                    handle,
                    _running: running,
                    thread,
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(Self {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// Serves `stream`, accepted on another runtime, on the next worker, round-robin: it
    /// leaves that runtime's reactor for the worker's, and `serve` runs there.
    pub(crate) fn serve<F>(
        &self,
        stream: TcpStream,
        serve: impl FnOnce(TcpStream) -> F + Send + 'static,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        let Ok(stream) = stream.into_std() else {
            return;
        };
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        self.workers[index].handle.spawn(async move {
            if let Ok(stream) = TcpStream::from_std(stream) {
                serve(stream).await;
            }
        });
    }

    /// Stops the workers (their tasks are dropped) and waits for their threads.
    pub(crate) async fn stop(self) {
        // Each `_running` dropped on the way ends its worker.
        let threads: Vec<_> = self.workers.into_iter().map(|w| w.thread).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}
