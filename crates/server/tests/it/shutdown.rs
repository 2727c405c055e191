//! Graceful shutdown: a request in flight when shutdown starts still completes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{ADMIN_TOKEN, app};

#[tokio::test]
async fn in_flight_upload_finishes_after_shutdown_is_requested() {
    let app = app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tarn_server::serve(
        app.state.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));

    let body = "x".repeat(64 * 1024);
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let head = format!(
        "PUT /api/2.0/mlflow-artifacts/artifacts/0/slow/artifacts/file.txt HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&body.as_bytes()[..1024])
        .await
        .expect("first part");
    tokio::time::sleep(Duration::from_millis(100)).await;

    stop.send(()).expect("shutdown");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream
        .write_all(&body.as_bytes()[1024..])
        .await
        .expect("rest");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .expect("join")
        .expect("serve");
    let (size, _) = app
        .state
        .artifacts
        .get_stream("dev", "0/slow/artifacts/file.txt")
        .await
        .expect("stored");
    assert_eq!(size, body.len() as u64);
    // New connections are refused once stopped.
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}
