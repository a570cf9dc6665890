//! Waiting for a server process the testkit started to answer.

use std::future::Future;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Asks `ready` every 25 ms until it says yes (`Ok(true)`), the process exits first (`Ok(false)`:
/// typically its port was taken, and the caller tries another), or `timeout` passes (an error
/// naming `what` and ending with the server's `log`).
pub(crate) async fn wait_until_ready<F, Fut>(
    child: &mut Child,
    what: &str,
    timeout: Duration,
    mut ready: F,
    log: impl Fn() -> String,
) -> Result<bool>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        if ready().await {
            return Ok(true);
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer within {timeout:?}: {}", log());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether something accepts connections on this loopback port.
pub(crate) async fn listening(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}
