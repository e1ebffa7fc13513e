//! `Forward` through the real agent binary. The agent runs on the host here, so a TCP server
//! this test process binds on 127.0.0.1 is on "the guest's loopback".

mod common;

use std::time::Duration;

use common::{fd_count, wait_until, Agent};
use hangar_guest::protocol::{encode_frame, ErrorCode};
use hangar_guest::{read_frame, Event, GuestError, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::oneshot;

const DEADLINE: Duration = Duration::from_secs(20);

/// A TCP echo server on 127.0.0.1: echoes each connection's bytes, then closes its side when
/// the peer's side ends. Runs until the test ends.
async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = conn.into_split();
                if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
                    let _ = wr.shutdown().await;
                }
            });
        }
    });
    port
}

/// Sends `data` and reads everything back until the far end closes, concurrently (an echo
/// would otherwise fill both directions' buffers and stall).
async fn round_trip(stream: UnixStream, data: Vec<u8>) -> Vec<u8> {
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await.expect("write");
        // Half-close: the echo server sees end of stream and closes after echoing.
        wr.shutdown().await.expect("shutdown");
        wr
    });
    let mut back = Vec::new();
    rd.read_to_end(&mut back).await.expect("read to end");
    writer.await.expect("writer task");
    back
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn a_mebibyte_each_way_arrives_intact() {
    let agent = Agent::start().await;
    let port = echo_server().await;
    let stream = agent.client().forward(port).await.expect("forward");
    let data = pattern(1024 * 1024, 7);
    let back = tokio::time::timeout(DEADLINE, round_trip(stream, data.clone()))
        .await
        .expect("round trip within deadline");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echoed bytes differ");
}

#[tokio::test]
async fn half_close_by_the_server_keeps_the_other_direction_open() {
    let agent = Agent::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (got_tx, got_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (conn, _) = listener.accept().await.expect("accept");
        let (mut rd, mut wr) = conn.into_split();
        wr.write_all(b"hello").await.expect("write");
        wr.shutdown().await.expect("server half-close");
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.expect("read");
        let _ = got_tx.send(got);
        // Keep the write half until the end so only the shutdown ended our direction.
        drop(wr);
    });
    let stream = agent.client().forward(port).await.expect("forward");
    let (mut rd, mut wr) = stream.into_split();
    let mut first = Vec::new();
    tokio::time::timeout(DEADLINE, rd.read_to_end(&mut first))
        .await
        .expect("end of stream within deadline")
        .expect("read");
    assert_eq!(first, b"hello", "server's bytes, then end of stream");
    // Our direction still works after the server's side ended.
    wr.write_all(b"still here").await.expect("write after eof");
    wr.shutdown().await.expect("client half-close");
    let got = tokio::time::timeout(DEADLINE, got_rx)
        .await
        .expect("server got our end of stream within deadline")
        .expect("server result");
    assert_eq!(got, b"still here");
}

#[tokio::test]
async fn bytes_around_the_reply_frame_are_not_lost() {
    let agent = Agent::start().await;
    // A server that speaks first, like a VNC server's RFB banner.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                conn.write_all(b"RFB 003.008\n").await.expect("banner");
                let (mut rd, mut wr) = conn.split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                let _ = wr.shutdown().await;
            });
        }
    });
    for _ in 0..20 {
        let mut stream = agent.client().forward(port).await.expect("forward");
        let mut banner = [0u8; 12];
        tokio::time::timeout(DEADLINE, stream.read_exact(&mut banner))
            .await
            .expect("banner within deadline")
            .expect("read banner");
        assert_eq!(&banner, b"RFB 003.008\n");
    }

    // A raw client that sends its first bytes in the same write as the request frame: the
    // agent must pass on what it read past the frame.
    let echo = echo_server().await;
    let mut raw = UnixStream::connect(&agent.sock).await.expect("connect");
    let mut first = encode_frame(&Request::Forward { port: echo }).expect("encode");
    first.extend_from_slice(b"early bytes");
    raw.write_all(&first).await.expect("write");
    let reply = tokio::time::timeout(DEADLINE, read_frame::<Event, _>(&mut raw))
        .await
        .expect("reply within deadline")
        .expect("reply frame");
    assert_eq!(reply, Some(Event::Forwarding));
    raw.shutdown().await.expect("half-close");
    let mut back = Vec::new();
    tokio::time::timeout(DEADLINE, raw.read_to_end(&mut back))
        .await
        .expect("echo within deadline")
        .expect("read");
    assert_eq!(back, b"early bytes");
}

#[tokio::test]
async fn refused_and_invalid_ports_are_errors() {
    let agent = Agent::start().await;
    let client = agent.client();
    // A port that was just free: nothing listens on it (on either loopback address).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = client.forward(port).await.expect_err("refused");
    assert!(
        matches!(
            err,
            GuestError::Remote {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{err:?}"
    );
    let err = client.forward(0).await.expect_err("port 0");
    assert!(
        matches!(
            err,
            GuestError::Remote {
                code: ErrorCode::InvalidRequest,
                ..
            }
        ),
        "{err:?}"
    );
    // The agent still serves.
    client.ping(DEADLINE).await.expect("ping");
}

#[tokio::test]
async fn many_concurrent_forwards_keep_their_bytes_apart_and_leave_no_fds() {
    let agent = Agent::start().await;
    let agent_pid = agent.child.id().expect("agent pid");
    let baseline = fd_count(agent_pid);
    let port = echo_server().await;
    let client = agent.client();
    let handles: Vec<_> = (0..40u8)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let stream = client.forward(port).await.expect("forward");
                let data = pattern(64 * 1024 + usize::from(i), i);
                let back = round_trip(stream, data.clone()).await;
                assert!(back == data, "forward {i}: echoed bytes differ");
            })
        })
        .collect();
    tokio::time::timeout(DEADLINE, async {
        for h in handles {
            h.await.expect("forward task");
        }
    })
    .await
    .expect("all forwards within deadline");
    // (The baseline may still hold the startup ping's socket, so "at most".)
    wait_until(DEADLINE, || async { fd_count(agent_pid) <= baseline }).await;
}

#[tokio::test]
async fn dropping_the_stream_closes_the_tcp_connection() {
    let agent = Agent::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (closed_tx, closed_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut buf = Vec::new();
        let _ = conn.read_to_end(&mut buf).await;
        let _ = closed_tx.send(buf);
    });
    let mut stream = agent.client().forward(port).await.expect("forward");
    stream.write_all(b"bye").await.expect("write");
    drop(stream);
    let got = tokio::time::timeout(DEADLINE, closed_rx)
        .await
        .expect("server saw the close within deadline")
        .expect("server result");
    assert_eq!(got, b"bye");
}
