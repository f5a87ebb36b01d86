//! The Restate test harness itself (`support::restate`), with the real server but without loop's
//! `restate` feature: a test runs in a network namespace with only loopback, the server comes up
//! there, survives `kill -9` and a restart on its data, and the end-of-test check finds the
//! processes it must (so its "none left" can fail).

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::restate::*;

#[test]
fn a_restate_test_runs_alone_on_loopback_and_leaves_nothing() {
    let Some(server) = server_bin() else { return };
    if !in_own_network() {
        return;
    }
    // Nothing but loopback: an outside address is unreachable at once, not after a timeout.
    let outside = SocketAddr::from(([192, 0, 2, 1], 443));
    let err = TcpStream::connect_timeout(&outside, Duration::from_secs(5)).expect_err("no route out");
    assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");

    let fx = Fixture::new(0, &[]);
    let mut srv = start_server(&fx, &server);
    wait_server_healthy();
    let tagged = processes_tagged(&fx.tag);
    assert!(tagged.iter().any(|(pid, _)| *pid == srv.pid()), "the check sees the server: {tagged:?}");

    srv.kill9();
    assert!(http_get(9070, "/health").is_none(), "the admin port closed with the server");
    srv.restart();
    wait_server_healthy();
    assert!(fx.env.root().join("restate-data").is_dir(), "the data stays in the test's dir");

    srv.stop();
    let left = left_behind(&fx.tag);
    assert!(left.is_empty(), "left behind: {left:?}");
}
