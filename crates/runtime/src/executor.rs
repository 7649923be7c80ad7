//! A minimal executor for futures that never wait.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs a future that completes without ever waiting, such as a collector
/// over [`crate::MemoryRuntime`] or any engine whose methods do no I/O.
///
/// This lets the simulator and synchronous embedders use the async
/// collectors without an async runtime. It polls the future once, with a
/// waker that does nothing.
///
/// # Panics
///
/// If the future is pending after that poll, which means it waits for real
/// I/O or a timer: run it on an async runtime (for example tokio's
/// `block_on`) instead.
///
/// ```
/// assert_eq!(reclaim_runtime::block_on(async { 40 + 2 }), 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!(
            "reclaim_runtime::block_on: the future is waiting for I/O or a timer; \
             run it on an async runtime instead"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct PendingOnce;

    impl Future for PendingOnce {
        type Output = ();

        fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }

    #[test]
    fn ready_futures_complete() {
        let value = block_on(async {
            let inner = async { 2 };
            inner.await * 21
        });
        assert_eq!(value, 42);
    }

    #[test]
    fn a_waiting_future_is_reported() {
        let caught = std::panic::catch_unwind(|| block_on(PendingOnce));
        let message = caught.unwrap_err();
        let text = message.downcast_ref::<&str>().copied().unwrap_or_default();
        assert!(text.contains("run it on an async runtime"), "{text}");
    }
}
