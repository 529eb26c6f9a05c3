//! Malformed, oversized, truncated and foreign-version frames: each gets an error reply or a
//! closed connection, and the server keeps serving everyone else.

mod common;

use common::TestServer;
use idserver::limits::REQUEST_FRAME_BYTES_MAX;
use idserver::wire::{decode, encode, Envelope, Reply, Request};
use idserver::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn read_reply(stream: &mut TcpStream) -> Option<Envelope<Reply>> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.ok()?;
    let mut payload = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut payload).await.ok()?;
    Some(decode(&payload).expect("server replies are well-formed"))
}

fn error_code(reply: &Envelope<Reply>) -> ErrorCode {
    match &reply.body {
        Reply::Error(e) => e.code,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Proves the server still serves a well-behaved client.
async fn still_serving(t: &TestServer) {
    let mut c = t.client();
    let login = format!("u{}", uuid::Uuid::new_v4().simple());
    c.create(&login, "", None)
        .await
        .expect("a normal client is still served");
}

#[tokio::test]
async fn garbage_payload_gets_bad_frame_and_the_connection_stays_usable() {
    let t = TestServer::start().await;
    let mut s = TcpStream::connect(t.addr()).await.unwrap();
    s.write_all(&frame(b"\xde\xad\xbe\xef not cbor"))
        .await
        .unwrap();
    assert_eq!(
        error_code(&read_reply(&mut s).await.unwrap()),
        ErrorCode::BadFrame
    );

    let status = encode(&Envelope::new(&t.cluster, 9, Request::Status), 1 << 16).unwrap();
    s.write_all(&status).await.unwrap();
    let reply = read_reply(&mut s).await.unwrap();
    assert_eq!(reply.seq, 9);
    assert!(matches!(reply.body, Reply::Status(_)), "{reply:?}");
    still_serving(&t).await;
}

#[tokio::test]
async fn well_formed_cbor_that_is_not_a_request_gets_bad_frame() {
    let t = TestServer::start().await;
    let mut s = TcpStream::connect(t.addr()).await.unwrap();
    let mut payload = Vec::new();
    let wrong = Envelope::new(&t.cluster, 3, "no such request");
    ciborium::into_writer(&wrong, &mut payload).unwrap();
    s.write_all(&frame(&payload)).await.unwrap();
    let reply = read_reply(&mut s).await.unwrap();
    assert_eq!((reply.seq, error_code(&reply)), (3, ErrorCode::BadFrame));
}

#[tokio::test]
async fn an_oversized_frame_is_refused_and_the_connection_closed() {
    let t = TestServer::start().await;
    let mut s = TcpStream::connect(t.addr()).await.unwrap();
    let announced = (REQUEST_FRAME_BYTES_MAX as u32 + 1).to_be_bytes();
    s.write_all(&announced).await.unwrap();
    s.write_all(&[0u8; 1024]).await.unwrap();
    let reply = read_reply(&mut s).await.unwrap();
    assert_eq!(error_code(&reply), ErrorCode::BadFrame);
    let mut rest = Vec::new();
    let closed = s.read_to_end(&mut rest).await;
    assert!(
        matches!(closed, Ok(0)) || closed.is_err(),
        "connection must be closed"
    );
    still_serving(&t).await;
}

#[tokio::test]
async fn a_truncated_frame_only_costs_its_own_connection() {
    let t = TestServer::start().await;
    let mut s = TcpStream::connect(t.addr()).await.unwrap();
    s.write_all(&100u32.to_be_bytes()).await.unwrap();
    s.write_all(&[0xa0; 10]).await.unwrap();
    s.shutdown().await.unwrap();
    assert!(
        read_reply(&mut s).await.is_none(),
        "no reply to half a frame"
    );
    still_serving(&t).await;
}

#[tokio::test]
async fn an_unknown_protocol_version_gets_version_mismatch() {
    let t = TestServer::start().await;
    let mut s = TcpStream::connect(t.addr()).await.unwrap();
    let mut future = Envelope::new(&t.cluster, 5, Request::Status);
    future.version_min = 99;
    future.version_max = 120;
    s.write_all(&encode(&future, 1 << 16).unwrap())
        .await
        .unwrap();
    let reply = read_reply(&mut s).await.unwrap();
    assert_eq!(
        (reply.seq, error_code(&reply)),
        (5, ErrorCode::VersionMismatch)
    );
    let Reply::Error(e) = reply.body else {
        unreachable!()
    };
    assert!(e.message.contains("99..=120"), "{}", e.message);
    still_serving(&t).await;
}

#[tokio::test]
async fn many_bad_connections_at_once_do_not_disturb_a_good_client() {
    let t = TestServer::start().await;
    let mut bad = Vec::new();
    for i in 0..50u8 {
        let mut s = TcpStream::connect(t.addr()).await.unwrap();
        s.write_all(&frame(&[i; 7])).await.unwrap();
        bad.push(s);
    }
    still_serving(&t).await;
    for s in &mut bad {
        assert_eq!(
            error_code(&read_reply(s).await.unwrap()),
            ErrorCode::BadFrame
        );
    }
}

/// A client that sends requests and never reads the replies is closed once the server's
/// writes make no progress for `REPLY_WRITE_STALL_MS`: it holds no reply, and no connection
/// slot, for ever (issue 28). Before, the server waited on the write for good.
#[tokio::test]
async fn a_client_that_never_reads_its_replies_is_closed() {
    use idserver::limits::REPLY_WRITE_STALL_MS;
    use std::time::{Duration, Instant};
    let t = TestServer::start().await;
    let stream = TcpStream::connect(t.addr()).await.unwrap();
    let status = encode(&Envelope::new(&t.cluster, 1, Request::Status), 1 << 16).unwrap();
    let (_unread, mut w) = stream.into_split();
    let started = Instant::now();
    // Requests until the server closes: its replies fill both sockets' buffers, then its
    // writes stall, it stops reading, and ours block until it gives up and resets.
    let writer = tokio::spawn(async move { while w.write_all(&status).await.is_ok() {} });
    let limit = Duration::from_millis(4 * REPLY_WRITE_STALL_MS);
    let closed = tokio::time::timeout(limit, writer).await;
    assert!(
        closed.is_ok(),
        "the server still held a connection whose replies nobody read after {limit:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(REPLY_WRITE_STALL_MS));
    still_serving(&t).await;
}
