//! Running async client libraries (object_store, fred) from the hub's synchronous storage
//! and lock calls, which run on the multi-threaded runtime's workers.

/// Runs `f` to completion on the current runtime without stalling its other tasks.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
