//! `Forward`: a raw byte pipe between the client's connection and a TCP port on the guest's
//! loopback.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::send_error;
use crate::protocol::{write_frame, ErrorCode, Event, FORWARD_CONNECT_TIMEOUT};

/// Bytes copied per read in each direction.
const PIPE_CHUNK_BYTES: usize = 64 * 1024;

/// Connects to `port`, answers `Forwarding`, then pipes bytes both ways until both directions
/// have ended (or one fails). `leftover` holds bytes the client sent after its request frame;
/// they go to the TCP peer first.
pub(super) async fn run<R, W>(port: u16, client_rd: R, leftover: BytesMut, client_wr: &mut W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if port == 0 {
        return send_error(client_wr, ErrorCode::InvalidRequest, "port 0".into()).await;
    }
    let tcp = match connect(port).await {
        Ok(tcp) => tcp,
        Err((code, message)) => return send_error(client_wr, code, message).await,
    };
    let _ = tcp.set_nodelay(true);
    if write_frame(client_wr, &Event::Forwarding).await.is_err() {
        return;
    }
    let (mut tcp_rd, mut tcp_wr) = tcp.into_split();
    let mut client_rd = client_rd;
    let upstream = async {
        if !leftover.is_empty() {
            tcp_wr.write_all(&leftover).await?;
        }
        copy(&mut client_rd, &mut tcp_wr).await?;
        // The client half-closed: pass it on as a FIN to the TCP peer.
        tcp_wr.shutdown().await
    };
    let downstream = async {
        copy(&mut tcp_rd, client_wr).await?;
        client_wr.shutdown().await
    };
    tokio::pin!(upstream, downstream);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut upstream, if !up_done => {
                up_done = true;
                if r.is_err() {
                    break;
                }
            }
            r = &mut downstream, if !down_done => {
                down_done = true;
                if r.is_err() {
                    break;
                }
            }
        }
    }
    // Returning drops both sockets: a failure in one direction tears down the other.
}

/// Connects to `127.0.0.1:port`, or `[::1]:port` when that is refused (a server bound to
/// `localhost` may have picked either), all within [`FORWARD_CONNECT_TIMEOUT`].
async fn connect(port: u16) -> Result<TcpStream, (ErrorCode, String)> {
    let deadline = Instant::now() + FORWARD_CONNECT_TIMEOUT;
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let first = match connect_until(v4, deadline).await {
        Ok(tcp) => return Ok(tcp),
        Err(e) => e,
    };
    if first.kind() == io::ErrorKind::ConnectionRefused {
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        if let Ok(tcp) = connect_until(v6, deadline).await {
            return Ok(tcp);
        }
    }
    let code = match first.kind() {
        io::ErrorKind::ConnectionRefused => ErrorCode::NotFound,
        io::ErrorKind::TimedOut => ErrorCode::Timeout,
        _ => ErrorCode::from_io(&first),
    };
    Err((code, format!("connect to {v4}: {first}")))
}

async fn connect_until(addr: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no connection within {FORWARD_CONNECT_TIMEOUT:?}"),
        )),
    }
}

/// Copies until end of stream (flushing after every chunk so that interactive protocols such
/// as RFB see each byte at once).
async fn copy<R, W>(r: &mut R, w: &mut W) -> io::Result<()>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; PIPE_CHUNK_BYTES];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
    }
}
