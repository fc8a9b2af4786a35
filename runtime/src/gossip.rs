//! Gossip datagrams between the UDP socket and the node.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::io::UdpSocket;

/// The largest datagram accepted; SWIM's packets are far smaller.
pub const DATAGRAM_BYTES_MAX: usize = 2048;

/// Datagrams waiting to be sent before new ones are dropped (gossip tolerates loss).
const OUTBOX_MAX: usize = 4096;

/// Starts receiving datagrams into `inbox` and sending those put into the returned
/// sender. Oversized datagrams are dropped; so are datagrams when the node is behind.
pub fn spawn(
    socket: Box<dyn UdpSocket>,
    inbox: mpsc::Sender<Vec<u8>>,
) -> mpsc::Sender<(SocketAddr, Vec<u8>)> {
    let socket: Arc<dyn UdpSocket> = Arc::from(socket);
    let (outbox, mut to_send) = mpsc::channel::<(SocketAddr, Vec<u8>)>(OUTBOX_MAX);
    let receiver = Arc::clone(&socket);
    tokio::spawn(async move {
        let mut buf = vec![0u8; DATAGRAM_BYTES_MAX + 1];
        loop {
            match receiver.recv_from(&mut buf).await {
                Ok((len, _from)) if len <= DATAGRAM_BYTES_MAX => {
                    if inbox.try_send(buf[..len].to_vec()).is_err() && inbox.is_closed() {
                        return;
                    }
                }
                Ok(_) => tracing::debug!("dropped an oversized gossip datagram"),
                Err(e) => {
                    tracing::debug!(error = %e, "gossip receive failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some((to, bytes)) = to_send.recv().await {
            if let Err(e) = socket.send_to(&bytes, to).await {
                tracing::debug!(%to, error = %e, "gossip send failed");
            }
        }
    });
    outbox
}
